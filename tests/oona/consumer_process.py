"""A consumer process for the crash test: calls its handler `stop_after` times, then signals and hangs
mid-batch (its batch delivered but not committed) until the test SIGKILLs it.

    python -m tests.oona.consumer_process URL PREFIX GROUP STOP_AFTER READY_FILE
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from redis.client import Pipeline

from domains.oona.bus import Delivery, OonaConsumer
from domains.oona.routing import OonaKeys, Queue
from eventstore.mirror import connect_redis


def main(url: str, prefix: str, group: str, stop_after: int, ready: Path) -> None:
    handled = 0

    def handler(delivery: Delivery, tx: Pipeline) -> None:
        nonlocal handled
        if handled == stop_after:
            ready.write_text(delivery.entry_id)
            threading.Event().wait()
        tx.rpush(f"{prefix}:results", delivery.envelope.event_id)
        handled += 1

    consumer = OonaConsumer(
        connect_redis(url), group, handler, keys=OonaKeys(prefix), queues=[Queue.NORMAL], name="doomed"
    )
    consumer.ensure_groups()
    while True:
        consumer.poll(block_ms=100)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), Path(sys.argv[5]))
