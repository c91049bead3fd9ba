"""A child process for the crash and multi-process tests: appends batches and reports each acknowledgement.

    python -m tests.eventstore.writer_child LOCATION NAME BATCHES [OPTION=VALUE ...]

Options are passed to open_store (fsync=always, segment_size=65536, schema=s_1, ...).

Each batch holds 1–4 events over two streams; every event's run_id is "NAME/<batch>/<index>/<size>" so the
parent can check that a batch is there entirely or not at all. After each acknowledged append the child
prints "ack <first position> <batch>" and flushes; BATCHES of 0 means forever.
"""

from __future__ import annotations

import random
import sys

from eventstore import open_store
from leyline import new_envelope, pb


def batch_events(name: str, batch: int, rng: random.Random) -> list[pb.EventEnvelope]:
    """Batch number `batch` of writer `name`: 1-4 events over two streams, run_id "NAME/batch/index/size"."""
    size = rng.randint(1, 4)
    return [
        new_envelope(
            "RunStarted",
            f"run-{name}" if index % 2 == 0 else f"seed-{name}.{batch % 3}",
            pb.RunStarted(run_id=f"{name}/{batch}/{index}/{size}", config_json="x" * rng.randint(0, 300)),
        )
        for index in range(size)
    ]


def main() -> None:
    location, name, batches = sys.argv[1], sys.argv[2], int(sys.argv[3])
    options: dict[str, object] = {}
    for argument in sys.argv[4:]:
        key, value = argument.split("=", 1)
        options[key] = int(value) if value.isdigit() else value
    store = open_store(location, **options)
    print("ready", flush=True)
    rng = random.Random(name)
    batch = 0
    while batches == 0 or batch < batches:
        positions = store.append(batch_events(name, batch, rng))
        print(f"ack {positions[0]} {batch}", flush=True)
        batch += 1
    store.close()


if __name__ == "__main__":
    main()
