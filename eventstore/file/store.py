"""`FileStore`, the façade of the embedded event store: it opens the directory, wires the concerns
together and answers the EventStore API by delegating to them.

    segments.py   the directory layout, `Segment` and `LogIndex` (the in-memory index they all share)
    head.py       HEAD, the head shared by every process through mmap, and in-process head waiters
    recovery.py   open: INDEX checkpoint, scan, torn-tail truncation; catch-up with other processes
    writer.py     group commit (the append hot path); durability.py: fsync policy, preallocation, DiskFull
    reads.py      reads and subscriptions
    snapshots.py  the per-stream snapshot cache
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path

from eventstore import metrics, wal
from eventstore.api import ALL_EVENTS, EventFilter, Expected, Snapshot, StoreUnavailable
from eventstore.file.durability import FsyncPolicy
from eventstore.file.head import HeadWaiters, SharedHead
from eventstore.file.reads import FileSubscription, Reader
from eventstore.file.recovery import Recovery, RecoveryReport
from eventstore.file.segments import (
    DEFAULT_SEGMENT_SIZE,
    HEAD_FILE,
    LOCK_FILE,
    LogIndex,
    prepare_directory,
    remove_leftovers,
)
from eventstore.file.snapshots import SnapshotCache
from eventstore.file.writer import Writer
from leyline import pb

LOG = logging.getLogger(__name__)


def _open_lock(path: Path, read_only: bool) -> int:
    """The LOCK file's descriptor; read-only, -1 when there is none (it is never created read-only)."""
    if not read_only:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return -1


class FileStore:
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        fsync: str = "batch",
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        preallocate: bool = True,
        read_only: bool = False,
    ) -> None:
        started = time.perf_counter()
        self.path = Path(path)
        self.policy = FsyncPolicy.parse(fsync)
        if segment_size < wal.HEADER_SIZE * 2:
            raise ValueError(f"segment_size {segment_size} is too small")
        self.segment_size = segment_size
        self.read_only = read_only
        prepare_directory(self.path, create and not read_only)
        self._log = LogIndex(self.path, read_only)
        try:
            self._head = SharedHead(self.path / HEAD_FILE, read_only)
            self._lock_fd = _open_lock(self.path / LOCK_FILE, read_only)
        except OSError as exc:
            raise StoreUnavailable(f"{self.path}: cannot open {exc.filename}: {exc.strerror}") from None
        self.recovery = RecoveryReport()
        self._recovery = Recovery(self._log, self._head, self.recovery)
        self._waiters = HeadWaiters()
        self._reader = Reader(self._log)
        self._snapshots = SnapshotCache(self.path, read_only)
        try:
            with self._file_lock():
                if not read_only:
                    self.recovery.removed_temporaries = remove_leftovers(self.path)
                self._recovery.open(repair=not read_only)
                if not read_only:
                    self._head.publish(self._log.head, durable=False)
        except BaseException:
            self._close_files()
            raise
        self.recovery.segments = len(self._log.segments)
        self.recovery.records = self._log.head - self.recovery.restored
        self.recovery.head = self._log.head
        self.recovery.duration_s = time.perf_counter() - started
        self._writer = Writer(
            self._log,
            self._head,
            self._recovery,
            self._waiters,
            self._lock_fd,
            self._reader.read_envelope,
            policy=self.policy,
            segment_size=segment_size,
            preallocate=preallocate,
            read_only=read_only,
        )
        metrics.RECOVERY_DURATION.observe(self.recovery.duration_s)

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """The process-shared lock; read-only, a shared one (no LOCK file: no writer to exclude yet)."""
        if self._lock_fd < 0:
            yield
            return
        fcntl.flock(self._lock_fd, fcntl.LOCK_SH if self.read_only else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _refresh(self) -> None:
        """Catch up with events other processes appended (cheap when nothing changed)."""
        if self._head.hint() > self._log.head:
            with self._writer.lock:
                self._recovery.catch_up(repair=False)
            self._waiters.notify()

    # ------------------------------------------------------------------ appending

    def append(
        self, events: Sequence[pb.EventEnvelope], expected: Mapping[str, Expected] | None = None
    ) -> list[int]:
        return self._writer.append(events, expected)

    def submit(
        self, events: Sequence[pb.EventEnvelope], expected: Mapping[str, Expected] | None = None
    ) -> Future[list[int]]:
        """Queue an append and return at once; the background flusher resolves the future."""
        return self._writer.submit(events, expected)

    # ------------------------------------------------------------------ reading

    def head_position(self) -> int:
        self._refresh()
        return self._log.head

    def stream_version(self, stream: str) -> int:
        self._refresh()
        return self._log.stream_version(stream)

    def read_stream(
        self, stream: str, from_version: int = 1, limit: int | None = None
    ) -> list[pb.EventEnvelope]:
        self._refresh()
        return self._reader.read_stream(stream, from_version, limit)

    def read_all(
        self,
        from_position: int = 1,
        event_filter: EventFilter = ALL_EVENTS,
        limit: int | None = None,
        to_position: int | None = None,
    ) -> Iterable[pb.EventEnvelope]:
        self._refresh()
        return self._reader.read_all(from_position, event_filter, limit, to_position)

    def subscribe(
        self, from_position: int = 1, event_filter: EventFilter = ALL_EVENTS, timeout: float | None = 1.0
    ) -> FileSubscription:
        return FileSubscription(
            self._reader, self._waiters, self.head_position, from_position, event_filter, timeout
        )

    # ------------------------------------------------------------------ snapshots

    def save_snapshot(self, snapshot: Snapshot) -> None:
        self._snapshots.save(snapshot)

    def load_snapshot(self, stream: str, schema_version: int) -> Snapshot | None:
        return self._snapshots.load(stream, schema_version, lambda: self.stream_version(stream))

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Commit what is queued, save the INDEX checkpoint (not read-only) and close the files."""
        writer = self._writer
        if writer.closed:
            return
        with writer.lock:
            writer.close()
            if self._log.segments and not self.read_only:
                self._save_index()
        writer.join_flusher()
        self._close_files()

    def _save_index(self) -> None:
        """INDEX is a cache: when it cannot be written (a full disk), the next open scans instead."""
        try:
            self._recovery.save_index()
        except OSError as exc:
            LOG.warning("%s: index checkpoint not saved (%s); the next open rescans the log", self.path, exc)
            remove_leftovers(self.path)

    def _close_files(self) -> None:
        self._log.close_segments()
        self._head.close()
        if self._lock_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)

    def __enter__(self) -> FileStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
