"""The embedded event store: a directory of append-only WAL segments (SPEC §5), one module per concern
(see store.py for the map).

Layout of a store directory:

    STORE                      marker: {"format": "esper-wal", "version": 1}
    LOCK                       flock'ed by a process while it appends (several processes may append)
    HEAD                       last committed global position (u64) and a "writing" flag (u64), shared by
                               every process through mmap: a hint for readers, and for appenders a way to
                               skip looking for other processes' writes when there were none
    INDEX                      index checkpoint written on close, so that open need not rescan (indexfile.py)
    00000000000000000001.wal   segments, named by the position of their first record (wal.py: framing)
    snapshots/                 per-stream snapshots, a disposable cache

Writing (writer.py): group commit, one `pwrite` and one `fdatasync` per group of queued requests, fsync
policy `always`, `batch` (default) or `interval:<ms>`; `submit` queues without waiting on fsync. The
per-event work of appends and of bulk reads is done a batch at a time by eventstore.walbatch (compiled in
eventstore/walc/ when built, which `bash ops/bootstrap.sh` does; otherwise pure Python, same bytes).
Recovery on open (recovery.py): INDEX checkpoint, then a CRC-checked scan; a torn tail is truncated and
reported in `store.recovery`, damage anywhere else raises CorruptLogError.

Readers in other processes see new events: reads first compare the HEAD hint with their own head and,
if it moved, scan the new records (stopping, without repairing, at a batch still being written).
An appender raises HEAD's writing flag before it touches a segment and clears it when it publishes the new
head. The next appender, under the file lock, sees from HEAD alone whether anything may have changed: a
head other than its own, or a flag left raised by a writer that died mid-batch, sends it to look at the
segment files (size, next segment) and scan or repair; otherwise it appends without a syscall to check.
HEAD is written through a shared mapping: publishing a head is a memory store, not a write call.

In-memory indexes, per event: the idempotency index (idindex.py, 16 bytes), the stream's position list
(8 bytes) and the record's offset in its segment (4 bytes): ~28 bytes per event, ~280 MB for 10 M events.
"""

from eventstore.file.durability import FsyncPolicy
from eventstore.file.head import CROSS_PROCESS_POLL_S, HEAD_STRUCT
from eventstore.file.reads import READ_CHUNK, FileSubscription
from eventstore.file.recovery import RecoveryReport
from eventstore.file.segments import (
    DEFAULT_SEGMENT_SIZE,
    FORMAT,
    HEAD_FILE,
    INDEX_FILE,
    LOCK_FILE,
    MARKER,
    SNAPSHOT_DIR,
)
from eventstore.file.store import FileStore
from eventstore.file.writer import BACKEND

__all__ = [
    "BACKEND",
    "CROSS_PROCESS_POLL_S",
    "DEFAULT_SEGMENT_SIZE",
    "FORMAT",
    "HEAD_FILE",
    "HEAD_STRUCT",
    "INDEX_FILE",
    "LOCK_FILE",
    "MARKER",
    "READ_CHUNK",
    "SNAPSHOT_DIR",
    "FileStore",
    "FileSubscription",
    "FsyncPolicy",
    "RecoveryReport",
]
