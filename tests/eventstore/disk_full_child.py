"""A child process for the full-disk test, run inside a small tmpfs mounted for it (see test_disk_full):

    python -m tests.eventstore.disk_full_child MOUNTPOINT

It fills the file system with a filler file but for 8 KiB, appends until an append fails, then closes the
store (the INDEX checkpoint cannot be written either), reopens it, frees the filler and appends again. It
prints one JSON object: what each step saw.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from eventstore import DiskFull, EventStoreError
from eventstore.file import FileStore
from leyline import new_envelope, pb


def main(mountpoint: Path) -> None:
    log, filler = mountpoint / "log", mountpoint / "filler"
    report: dict[str, object] = {}
    store = FileStore(log, segment_size=1 << 20)
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass
        handle.truncate(handle.tell() - 8192)  # room for a few appends
    acknowledged = 0
    try:
        for batch in range(10_000):
            events = [
                new_envelope("RunStarted", "run-x", pb.RunStarted(run_id=f"{batch}.{i}")) for i in range(8)
            ]
            acknowledged = store.append(events)[-1]
    except DiskFull as exc:
        report["error"] = {"type": type(exc).__name__, "message": str(exc), "path": exc.path}
    except EventStoreError as exc:
        report["error"] = {"type": type(exc).__name__, "message": str(exc)}
    report["acknowledged"] = acknowledged
    store.close()
    report["temporaries"] = sorted(name for name in os.listdir(log) if name.endswith(".tmp"))
    with FileStore(log) as reopened:
        report["head_after_reopen"] = reopened.head_position()
        filler.unlink()
        reopened.append([new_envelope("RunStarted", "run-x", pb.RunStarted(run_id="after"))])
        report["head_after_freeing"] = reopened.head_position()
    print(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
