"""The fsync policy of the file store's writer, how far it extends a segment ahead of its data, and the
typed error for a full disk."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NoReturn

from eventstore.api import DISK_FULL_ERRNOS, DiskFull

# Zeros written ahead of a segment's data at a time: an fdatasync of records written into space the file
# already has need not also commit a new file size to the journal (measured ~1.4x the fdatasyncs/s of a
# growing file on this ext4 disk, quiet); one extension serves ~2,500 single-event appends. Only writes
# smaller than EXTEND_BELOW extend: the zeros cost as much I/O as the data later written over them, which
# a large batch's fdatasync pays for in full while it saves one journal commit. Measured against pre-framed
# batches written to a growing file (esper bench eventstore's raw group commit, same session, alternating
# runs): 100-event batches (~42 KB) at 0.63-0.74 of that rate into a growing file, 0.93-1.08 into zeros;
# in one process, alternating: 250-event batches (~106 KB) 0.61 -> 0.77, while 500 (~212 KB) and 1000
# (~424 KB) were no faster into zeros (0.48 -> 0.49; 0.40 -> 0.38-0.40).
EXTEND_AHEAD = 1 << 20
EXTEND_BELOW = 128 << 10


@dataclass(frozen=True)
class FsyncPolicy:
    kind: Literal["always", "batch", "interval"]
    interval_s: float = 0.0

    @classmethod
    def parse(cls, text: str) -> FsyncPolicy:
        if text in ("always", "batch"):
            return cls(text)  # type: ignore[arg-type]
        if text.startswith("interval:"):
            try:
                milliseconds = float(text.split(":", 1)[1])
            except ValueError:
                milliseconds = -1.0
            if milliseconds > 0:
                return cls("interval", milliseconds / 1000)
        raise ValueError(f"fsync policy must be 'always', 'batch' or 'interval:<ms>' (ms > 0), got {text!r}")

    def __str__(self) -> str:
        return f"interval:{self.interval_s * 1000:g}" if self.kind == "interval" else self.kind


def raise_typed(error: OSError, path: str) -> NoReturn:
    """Raise DiskFull for an out-of-space error while writing path, any other error as it is."""
    if error.errno in DISK_FULL_ERRNOS:
        raise DiskFull(path) from error
    raise error
