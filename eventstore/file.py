"""The embedded event store: a directory of append-only WAL segments (SPEC §5).

Layout of a store directory:

    STORE                      marker: {"format": "esper-wal", "version": 1}
    LOCK                       flock'ed by a process while it appends (several processes may append)
    HEAD                       last committed global position (u64) and a "writing" flag (u64), shared by
                               every process through mmap: a hint for readers, and for appenders a way to
                               skip looking for other processes' writes when there were none
    INDEX                      index checkpoint written on close, so that open need not rescan (indexfile.py)
    00000000000000000001.wal   segments, named by the position of their first record (wal.py: framing)
    snapshots/                 per-stream snapshots, a disposable cache

Writing. Every append goes through a group-commit writer: requests are queued, and whichever thread holds
the write mutex (a caller of `append`, or the background flusher that serves `submit`) takes *all* queued
requests, takes the process-shared file lock, catches up with what other processes appended, checks
expected versions and event ids, writes every request's records with one `pwrite` and makes them durable
with one `fdatasync`, then publishes the new head and resolves the requests. fsync policies:

- `always`: every request is written and fdatasync'ed on its own before it is acknowledged;
- `batch` (default): one fdatasync per group of queued requests; still durable when acknowledged;
- `interval:<ms>`: requests are acknowledged once written (they survive a crash of the process, not of the
  machine); the background flusher fdatasyncs at most every <ms> milliseconds.

Non-blocking appends (the training thread never waits on fsync): `submit(events, expected)` queues the
request and returns a `concurrent.futures.Future[list[int]]` that the background flusher resolves with the
positions, or with WrongExpectedVersion / another error. `append(...)` queues its request the same way and
commits the queue inline: under load, one fsync covers every caller that queued meanwhile. It needs no
Future: whoever commits resolves every request it took before releasing the write mutex, so once the
caller holds the mutex its request has an outcome.

A segment is created when the current one would grow past `segment_size` (64 MB by default; a batch is
never split across segments), with O_EXCL and an fsync of the directory; `preallocate=True` reserves the
segment's blocks up front (best effort: fallocate with KEEP_SIZE, so the file size still marks the end of
the data).

Recovery on open (under the file lock): the indexes come from the INDEX checkpoint when it is valid and
every checkpointed segment's bytes still match their recorded CRC32C (checked in bulk); the records after
it, or all of them when there is no usable checkpoint, are scanned one by one with their CRC32C checked and
indexed. A damaged or incomplete record (or batch) in the last segment after which no valid record follows
is a torn tail: it is truncated from the start of its batch and reported in `store.recovery`. Damage
anywhere else raises CorruptLogError naming segment, byte offset and position; nothing is skipped. Damage
to the very last record is indistinguishable from a torn write, and is treated as one.

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

from __future__ import annotations

import bisect
import contextlib
import ctypes
import ctypes.util
import fcntl
import hashlib
import json
import logging
import mmap
import os
import struct
import threading
import time
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from itertools import accumulate, chain, islice, repeat
from operator import attrgetter
from pathlib import Path
from typing import Any, Literal, NamedTuple

import crc32c

from eventstore import indexfile, metrics, wal
from eventstore.api import (
    ALL_EVENTS,
    CorruptLogError,
    EventFilter,
    EventStoreError,
    Expected,
    InvalidEvent,
    Snapshot,
    StoreUnavailable,
)
from eventstore.idindex import RECENT_LIMIT, IdIndex
from eventstore.subscription import PollingSubscription
from leyline import pb

MARKER = "STORE"
FORMAT = {"format": "esper-wal", "version": 1}
LOCK_FILE = "LOCK"
HEAD_FILE = "HEAD"
INDEX_FILE = "INDEX"
SNAPSHOT_DIR = "snapshots"
DEFAULT_SEGMENT_SIZE = 64 << 20
READ_CHUNK = 1 << 20
HEAD_STRUCT = struct.Struct("<QQ")  # head, writing flag
SNAPSHOT_MAGIC = b"ESNP"
SNAPSHOT_PREFIX = struct.Struct("<4sI")  # magic, crc32c of the rest
SNAPSHOT_FIELDS = struct.Struct("<IQH")  # the rest: schema_version, version, stream_len, then stream, data
CROSS_PROCESS_POLL_S = 0.02
BACKEND = "file"
LOG = logging.getLogger(__name__)
EVENT_ID, STREAM, EVENT_TYPE = attrgetter("event_id"), attrgetter("stream"), attrgetter("event_type")
APPEND_LATENCY = metrics.APPEND_LATENCY.labels(BACKEND)
BYTES_WRITTEN = metrics.BYTES_WRITTEN.labels(BACKEND)


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


@dataclass
class RecoveryReport:
    """What opening the store found and did."""

    segments: int = 0
    restored: int = 0  # events whose index came from the INDEX checkpoint (their bytes CRC-checked in bulk)
    records: int = 0  # events scanned record by record
    head: int = 0
    truncated_bytes: int = 0
    truncated_segment: str | None = None
    truncated_offset: int | None = None
    truncated_reason: str | None = None
    duration_s: float = 0.0

    def describe(self) -> str:
        text = f"scanned {self.records} records in {self.segments} segments, head position {self.head}"
        if self.restored:
            text += f" ({self.restored} indexed from the checkpoint, their segments' CRC32C verified)"
        if self.truncated_bytes:
            text += (
                f"; truncated a torn tail of {self.truncated_bytes} bytes "
                f"in segment {self.truncated_segment} "
                f"at byte offset {self.truncated_offset} ({self.truncated_reason})"
            )
        return text


class _Segment:
    __slots__ = ("crc", "end", "fd", "first", "name", "offsets")

    def __init__(self, first: int, fd: int) -> None:
        self.first = first
        self.name = wal.segment_name(first)
        self.fd = fd
        self.offsets = array("I")  # offset of position first + i at index i
        self.end = 0  # end of the last committed record
        self.crc = 0  # CRC32C of the bytes before end, for the index checkpoint


@dataclass(slots=True)
class _Request:
    events: list[pb.EventEnvelope]
    expected: dict[str, Expected]
    future: Future[list[int]] | None  # submit's; append reads the outcome
    submitted: float = field(default_factory=time.perf_counter)
    outcome: list[int] | BaseException | None = None


class _NewEvents(NamedTuple):
    """Index keys of the events a request adds, in position order."""

    positions: range
    streams: list[str]
    fingerprints: list[int]


@dataclass(slots=True)
class _Pending:
    """Index entries of records written in the current group, applied once the group is durable."""

    # per request written: its segment, its records' offsets and the index keys of its new events
    entries: list[tuple[_Segment, list[int], _NewEvents]] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)


def _preallocator() -> Any:
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    function = ctypes.CDLL(libc_name, use_errno=True).fallocate
    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    return function


FALLOC_FL_KEEP_SIZE = 1


class FileStore:
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        fsync: str = "batch",
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        preallocate: bool = False,
    ) -> None:
        started = time.perf_counter()
        self.path = Path(path)
        self._directory = str(self.path)
        self.policy = FsyncPolicy.parse(fsync)
        if segment_size < wal.HEADER_SIZE * 2:
            raise ValueError(f"segment_size {segment_size} is too small")
        self.segment_size = segment_size
        self._fallocate = _preallocator() if preallocate else None
        self._prepare_directory(create)
        self._segments: list[_Segment] = []
        self._firsts: list[int] = []
        self._streams: dict[str, array] = {}
        self._ids = IdIndex()
        self._head = 0
        self._closed = False
        self._write_lock = threading.RLock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Request] = []
        self._changed = threading.Condition()
        self._waiting = 0  # threads in _wait_for: an append notifies only when there are some
        self._wake = threading.Event()
        self._flusher: threading.Thread | None = None
        self._unsynced: set[_Segment] = set()
        self._last_sync = time.monotonic()
        self._head_map = _map_head(self.path / HEAD_FILE)
        self._lock_fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        self.recovery = RecoveryReport()
        try:
            with self._file_lock():
                self._check_segment_names()
                self.recovery.restored = self._restore_index()
                self._catch_up(repair=True, full=True)
                self._publish_head()
        except BaseException:
            self._close_files()
            raise
        self.recovery.segments = len(self._segments)
        self.recovery.records = self._head - self.recovery.restored
        self.recovery.head = self._head
        self.recovery.duration_s = time.perf_counter() - started
        if self.policy.kind == "interval":
            self._ensure_flusher()  # it fdatasyncs every interval even when nobody calls submit
        metrics.RECOVERY_DURATION.observe(self.recovery.duration_s)

    # ------------------------------------------------------------------ opening and recovery

    def _prepare_directory(self, create: bool) -> None:
        marker = self.path / MARKER
        if self.path.exists() and not self.path.is_dir():
            raise StoreUnavailable(f"{self.path} is not a directory")
        if marker.exists():
            try:
                found = json.loads(marker.read_text())
            except (OSError, ValueError) as exc:
                raise StoreUnavailable(f"{self.path}: unreadable {MARKER} file ({exc})") from None
            if not isinstance(found, dict) or found.get("format") != FORMAT["format"]:
                raise StoreUnavailable(f"{self.path} is not an esper event store ({MARKER} says {found!r})")
            if found.get("version") != FORMAT["version"]:
                raise StoreUnavailable(
                    f"{self.path}: store format version {found.get('version')} is not supported "
                    f"(this esper reads version {FORMAT['version']})"
                )
            return
        if not self.path.exists() and not create:
            raise StoreUnavailable(f"{self.path} does not exist")
        if self.path.exists() and any(self.path.iterdir()):
            raise StoreUnavailable(f"{self.path} is not an esper event store (no {MARKER} file, not empty)")
        if not create:
            raise StoreUnavailable(f"{self.path} is not an esper event store (empty directory)")
        self.path.mkdir(parents=True, exist_ok=True)
        temporary = self.path / f".{MARKER}.tmp"
        temporary.write_text(json.dumps(FORMAT))
        os.replace(temporary, marker)
        self._fsync_directory()

    def _fsync_directory(self) -> None:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _restore_index(self) -> int:
        """Take the indexes from a valid INDEX checkpoint; the head it restored (0 if none was usable)."""
        state = indexfile.load(self.path / INDEX_FILE)
        if state is None or not state.segments:
            return 0
        segments: list[_Segment] = []
        usable = False
        try:
            for saved in state.segments:
                expected_first = segments[-1].first + len(segments[-1].offsets) if segments else 1
                if saved.first != expected_first:
                    return 0
                segment = _Segment(saved.first, os.open(self._segment_path(saved.first), os.O_RDWR))
                segments.append(segment)
                if (
                    os.fstat(segment.fd).st_size < saved.end
                    or indexfile.segment_crc(segment.fd, saved.end) != saved.crc
                ):
                    return 0
                segment.offsets, segment.end, segment.crc = saved.offsets, saved.end, saved.crc
            usable = segments[-1].first + len(segments[-1].offsets) - 1 == state.head
        except FileNotFoundError:
            return 0
        finally:
            if not usable:
                for segment in segments:
                    os.close(segment.fd)
        if not usable:
            return 0
        self._segments = segments
        self._firsts = [segment.first for segment in segments]
        self._streams = state.streams
        self._ids.load_runs(state.runs)
        self._head = state.head
        return state.head

    def _save_index(self) -> None:
        segments = [
            indexfile.SegmentIndex(segment.first, segment.end, segment.crc, segment.offsets)
            for segment in self._segments
        ]
        state = indexfile.IndexState(self._head, segments, self._streams, self._ids.runs())
        indexfile.save(self.path / INDEX_FILE, state)

    def _check_segment_names(self) -> None:
        for name in sorted(os.listdir(self.path)):
            if name.endswith(".wal") and wal.segment_first_position(name) is None:
                raise CorruptLogError(name, 0, 0, "a .wal file whose name is not a position")

    def _segment_path(self, first: int) -> str:
        return os.path.join(self._directory, wal.segment_name(first))

    def _open_segment(self, first: int, create: bool = False) -> _Segment:
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        fd = os.open(self._segment_path(first), flags, 0o644)
        segment = _Segment(first, fd)
        self._segments.append(segment)
        self._firsts.append(first)
        return segment

    def _new_segment(self, first: int) -> _Segment:
        segment = self._open_segment(first, create=True)
        if self._fallocate is not None:
            self._fallocate(segment.fd, FALLOC_FL_KEEP_SIZE, 0, self.segment_size)
        self._fsync_directory()
        return segment

    def _later_segments(self, full: bool) -> list[int]:
        """Segments after our last one: all of them (a directory listing, on open) or the one that would
        follow our head (one stat, when HEAD says another process may have written: it may have rolled
        the log, or crashed right after creating a segment)."""
        if full:
            firsts = []
            for name in os.listdir(self.path):
                first = wal.segment_first_position(name)
                if first is not None and (not self._firsts or first > self._firsts[-1]):
                    firsts.append(first)
            return sorted(firsts)
        following = self._head + 1
        if self._firsts and self._firsts[-1] == following:
            return []
        return [following] if os.path.exists(self._segment_path(following)) else []

    def _catch_up(self, repair: bool, full: bool = False) -> None:
        """Index every committed record after our head; under the file lock (repair) fix a torn tail."""
        if self._segments and not full:
            if not self._others_may_have_written():
                return  # the common case on every append
            last = self._segments[-1]
            if os.fstat(last.fd).st_size == last.end and not self._later_segments(full):
                return
        fps, positions = array("Q"), array("Q")
        retried = False
        try:
            while True:
                if not self._segments:
                    later = self._later_segments(full)
                    if not later:
                        return
                    if later[0] != 1:
                        raise CorruptLogError(wal.segment_name(later[0]), 0, 1, "the log does not start at 1")
                    self._open_segment(later[0])
                segment = self._segments[-1]
                size = os.fstat(segment.fd).st_size
                problem: tuple[int, int, str, int] | None = None
                data = b""
                base = segment.end
                if size > segment.end:
                    data = os.pread(segment.fd, size - segment.end, segment.end)
                    problem = self._apply(segment, data, fps, positions)
                later = self._later_segments(full)
                if problem is None:
                    if not later:
                        return
                    if later[0] != self._head + 1:
                        raise CorruptLogError(
                            wal.segment_name(later[0]),
                            0,
                            self._head + 1,
                            f"segment starts at position {later[0]}, expected {self._head + 1}",
                        )
                    self._open_segment(later[0])
                    retried = False
                    continue
                offset, position, reason, search_from = problem
                if later and not repair and not retried:
                    retried = True  # a writer may have completed this batch before creating the next file
                    continue
                if later or not repair:
                    if later:
                        raise CorruptLogError(segment.name, offset, position, reason)
                    return
                if wal.valid_frame_after(data, search_from - base, position) is not None:
                    raise CorruptLogError(segment.name, offset, position, reason)
                self._truncate(segment, segment.end, size, reason)
                return
        finally:
            self._index_ids(fps, positions)

    def _apply(
        self, segment: _Segment, data: bytes, fps: array, positions: array
    ) -> tuple[int, int, str, int] | None:
        """Index the committed batches in data (read at segment.end); the first problem, if any.

        A problem is (offset, position, reason, where a search for valid records after it starts).
        """
        base = segment.end
        scan = wal.Scan(data, 0, self._head + 1)
        pending: list[wal.Frame] = []
        streams = self._streams
        for frame in scan:
            pending.append(frame)
            if not frame.commit:
                continue
            for item in pending:
                positions_of = streams.get(item.stream)
                if positions_of is None:
                    positions_of = streams[item.stream] = array("Q")
                if item.stream_version != len(positions_of) + 1:
                    raise CorruptLogError(
                        segment.name,
                        base + item.offset,
                        item.position,
                        f"stream {item.stream!r} version {item.stream_version} follows {len(positions_of)}",
                    )
                positions_of.append(item.position)
                segment.offsets.append(base + item.offset)
                fps.append(item.fingerprint)
                positions.append(item.position)
            self._head = frame.position
            segment.end = base + frame.end
            pending.clear()
        if segment.end > base:
            segment.crc = crc32c.crc32c(memoryview(data)[: segment.end - base], segment.crc)
        if scan.problem is not None:
            return base + scan.offset, scan.next_position, scan.problem, base + scan.offset
        if pending:
            reason = "incomplete batch (no commit record)"
            return base + pending[0].offset, pending[0].position, reason, base + len(data)
        return None

    def _index_ids(self, fps: array, positions: array) -> None:
        if len(fps) >= RECENT_LIMIT:
            self._ids.bulk_load(fps, positions)
        else:
            self._ids.add_many(fps, positions)

    def _truncate(self, segment: _Segment, offset: int, size: int, reason: str) -> None:
        os.ftruncate(segment.fd, offset)
        os.fsync(segment.fd)
        self.recovery.truncated_bytes += size - offset
        self.recovery.truncated_segment = segment.name
        self.recovery.truncated_offset = offset
        self.recovery.truncated_reason = reason
        metrics.TRUNCATED_BYTES.inc(size - offset)
        LOG.warning(
            "%s: truncated a torn tail of %d bytes in segment %s at byte offset %d (%s)",
            self.path,
            size - offset,
            segment.name,
            offset,
            reason,
        )

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _publish_head(self) -> None:
        """Announce the head to other processes and lower the writing flag."""
        HEAD_STRUCT.pack_into(self._head_map, 0, self._head, 0)

    def _raise_writing_flag(self) -> None:
        HEAD_STRUCT.pack_into(self._head_map, 0, self._head, 1)

    def _others_may_have_written(self) -> bool:
        head, writing = HEAD_STRUCT.unpack_from(self._head_map)
        return head != self._head or writing != 0

    def _refresh(self) -> None:
        """Catch up with events other processes appended (cheap when nothing changed)."""
        if HEAD_STRUCT.unpack_from(self._head_map)[0] > self._head:
            with self._write_lock:
                self._catch_up(repair=False)
            self._notify_waiters()

    # ------------------------------------------------------------------ appending

    def append(
        self, events: Sequence[pb.EventEnvelope], expected: Mapping[str, Expected] | None = None
    ) -> list[int]:
        request = self._enqueue(events, expected, None)
        with self._write_lock:
            if request.outcome is None:
                self._commit_queued()
        outcome = request.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        assert outcome is not None, "a commit resolves its requests before releasing the write mutex"
        return outcome

    def submit(
        self, events: Sequence[pb.EventEnvelope], expected: Mapping[str, Expected] | None = None
    ) -> Future[list[int]]:
        """Queue an append and return at once; the background flusher resolves the future."""
        future: Future[list[int]] = Future()
        self._enqueue(events, expected, future)
        self._ensure_flusher()
        self._wake.set()
        return future

    def _enqueue(
        self,
        events: Sequence[pb.EventEnvelope],
        expected: Mapping[str, Expected] | None,
        future: Future[list[int]] | None,
    ) -> _Request:
        if self._closed:
            raise EventStoreError("the store is closed")
        request = _Request(list(events), dict(expected or {}), future)
        with self._queue_lock:
            self._queue.append(request)
        return request

    def _ensure_flusher(self) -> None:
        if self._flusher is None:
            with self._write_lock:
                if self._flusher is None:
                    self._flusher = threading.Thread(
                        target=self._flush_loop, name="eventstore-flusher", daemon=True
                    )
                    self._flusher.start()

    def _flush_loop(self) -> None:
        while not self._closed:
            period = self.policy.interval_s if self.policy.kind == "interval" else None
            self._wake.wait(period)
            self._wake.clear()
            with self._write_lock:
                if self._closed:
                    return
                self._commit_queued()
                if (
                    self.policy.kind == "interval"
                    and time.monotonic() - self._last_sync >= self.policy.interval_s
                ):
                    self._sync_unsynced()

    def _commit_queued(self) -> None:
        with self._queue_lock:
            requests, self._queue = self._queue, []
        if not requests:
            return
        outcomes: list[tuple[_Request, list[int] | BaseException]] = []
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)  # inline: this runs on every append
            try:
                self._catch_up(repair=True)
                self._raise_writing_flag()
                self._write_group(requests, outcomes)
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        except BaseException as exc:
            done = {id(request) for request, _ in outcomes}
            outcomes.extend((request, exc) for request in requests if id(request) not in done)
        now = time.perf_counter()
        for request, outcome in outcomes:
            request.outcome = outcome
            future = request.future
            if isinstance(outcome, BaseException):
                if future is not None:
                    future.set_exception(outcome)
                continue
            if future is not None:
                future.set_result(outcome)
            APPEND_LATENCY.observe(now - request.submitted)
        self._notify_waiters()

    def _notify_waiters(self) -> None:
        # A waiter counts itself before it compares heads, under the condition's lock: if it is not
        # counted yet, it will see the new head and not wait.
        if self._waiting:
            with self._changed:
                self._changed.notify_all()

    def _write_group(
        self, requests: list[_Request], outcomes: list[tuple[_Request, list[int] | BaseException]]
    ) -> None:
        pending = _Pending()
        buffer = bytearray()
        segment = self._segments[-1] if self._segments else None
        next_position = self._head + 1
        written: list[tuple[_Request, list[int]]] = []
        group_events = 0
        starts: dict[_Segment, tuple[int, int]] = {}
        try:
            for request in requests:
                try:
                    positions, records, new_entries = self._plan(request, pending, next_position)
                except EventStoreError as exc:
                    outcomes.append((request, exc))
                    continue
                if not records:
                    outcomes.append((request, positions))
                    continue
                lengths = list(map(len, records))
                size = sum(lengths)
                if segment is None or (
                    segment.end + len(buffer) > 0 and segment.end + len(buffer) + size > self.segment_size
                ):
                    if segment is not None and buffer:
                        self._write(segment, buffer, starts)
                        buffer = bytearray()
                    segment = self._new_segment(next_position)
                offsets = list(accumulate(lengths[:-1], initial=segment.end + len(buffer)))
                pending.entries.append((segment, offsets, new_entries))
                buffer += b"".join(records)
                next_position += len(records)
                group_events += len(records)
                written.append((request, positions))
                if self.policy.kind == "always":
                    self._write(segment, buffer, starts)
                    buffer = bytearray()
                    self._sync_unsynced()
            if buffer and segment is not None:
                self._write(segment, buffer, starts)
            if self.policy.kind == "batch":
                self._sync_unsynced()
        except BaseException:
            for touched, (start, crc) in starts.items():
                os.ftruncate(touched.fd, start)
                touched.end, touched.crc = start, crc
            raise
        if group_events:
            metrics.FSYNC_BATCH_SIZE.observe(group_events)
        streams = self._streams
        for touched_segment, offsets, new_events in pending.entries:
            touched_segment.offsets.extend(offsets)
            for stream, position in zip(new_events.streams, new_events.positions, strict=True):
                positions_of = streams.get(stream)
                if positions_of is None:
                    positions_of = streams[stream] = array("Q")
                positions_of.append(position)
            self._ids.add_many(new_events.fingerprints, new_events.positions)
        self._head = next_position - 1
        self._publish_head()
        outcomes.extend(written)

    def _plan(
        self, request: _Request, pending: _Pending, next_position: int
    ) -> tuple[list[int], list[bytes], _NewEvents]:
        """Positions of the request's events, the records to write for the new ones and their index keys.

        Per-event work is done a batch at a time where a C loop can do it (map, join, set operations).
        """
        events = request.events
        if not events:
            return [], [], _NewEvents(range(0), [], [])
        ids = list(map(EVENT_ID, events))
        names = list(map(STREAM, events))
        if not (all(ids) and all(names) and all(map(EVENT_TYPE, events))):
            raise InvalidEvent("every event needs an event_id, an event_type and a stream")
        fps = wal.fingerprints(ids)
        hits = self._ids.candidates(fps)
        pending_ids = pending.ids
        chosen = events
        if not hits and len(set(ids)) == len(ids) and pending_ids.keys().isdisjoint(ids):
            positions = list(range(next_position, next_position + len(events)))  # the common case
        else:
            fresh, positions = self._deduplicate(ids, hits, pending_ids, next_position)
            if not fresh:
                metrics.DUPLICATES.labels(BACKEND).inc(len(events))
                return positions, [], _NewEvents(range(0), [], [])
            if len(fresh) < len(events):
                metrics.DUPLICATES.labels(BACKEND).inc(len(events) - len(fresh))
                chosen = [events[index] for index in fresh]
                ids = [ids[index] for index in fresh]
                names = [names[index] for index in fresh]
                fps = [fps[index] for index in fresh]
        for stream, expectation in request.expected.items():
            try:
                expectation.check(stream, self._version(stream, pending))
            except EventStoreError:
                metrics.CONFLICTS.labels(BACKEND).inc()
                raise
        versions, streams = pending.versions, self._streams
        chosen_positions = range(next_position, next_position + len(chosen))
        pending_ids.update(zip(ids, chosen_positions, strict=True))
        tail, prefix, crc, magic, tail_size = (
            wal.TAIL.pack,
            wal.PREFIX.pack,
            crc32c.crc32c,
            wal.MAGIC,
            wal.TAIL.size,
        )
        records = []
        flags = chain(repeat(0, len(chosen) - 1), (wal.FLAG_COMMIT,))
        for position, stream, fp, name, flag, event in zip(
            chosen_positions, names, fps, map(str.encode, names), flags, chosen, strict=True
        ):
            version = versions.get(stream)
            if version is None:
                known = streams.get(stream)
                version = len(known) if known is not None else 0
            versions[stream] = version = version + 1
            body = tail(position, version, fp, len(name), flag) + name + event.SerializeToString()
            records.append(prefix(magic, len(body) - tail_size, crc(body)) + body)
        return positions, records, _NewEvents(chosen_positions, names, fps)

    def _deduplicate(
        self, ids: list[str], hits: dict[int, list[int]], pending_ids: dict[str, int], next_position: int
    ) -> tuple[list[int], list[int]]:
        """Indexes of the events not stored yet, and every event's position (new ones numbered in order)."""
        fresh: list[int] = []
        positions: list[int] = []
        local: dict[str, int] = {}
        for index, event_id in enumerate(ids):
            known = local.get(event_id) or pending_ids.get(event_id)
            if known is None and index in hits:
                known = self._confirm(hits[index], event_id)
            if known is None:
                known = local[event_id] = next_position + len(fresh)
                fresh.append(index)
            positions.append(known)
        return fresh, positions

    def _version(self, stream: str, pending: _Pending) -> int:
        """The stream's version counting the records written in this group but not indexed yet."""
        version = pending.versions.get(stream)
        return self._indexed_version(stream) if version is None else version

    def _indexed_version(self, stream: str) -> int:
        positions_of = self._streams.get(stream)
        return len(positions_of) if positions_of is not None else 0

    def _confirm(self, candidates: list[int], event_id: str) -> int | None:
        """The candidate position whose stored event really has this id (fingerprints can collide)."""
        for position in candidates:
            if position <= self._head and self._read_envelope(position).event_id == event_id:
                return position
        return None

    def _write(self, segment: _Segment, buffer: bytearray, starts: dict[_Segment, tuple[int, int]]) -> None:
        starts.setdefault(segment, (segment.end, segment.crc))
        segment.crc = crc32c.crc32c(buffer, segment.crc)
        written = os.pwrite(segment.fd, buffer, segment.end)
        while written < len(buffer):
            written += os.pwrite(segment.fd, memoryview(buffer)[written:], segment.end + written)
        segment.end += len(buffer)
        self._unsynced.add(segment)
        BYTES_WRITTEN.inc(len(buffer))

    def _sync_unsynced(self) -> None:
        for segment in self._unsynced:
            os.fdatasync(segment.fd)
        self._unsynced.clear()
        self._last_sync = time.monotonic()

    # ------------------------------------------------------------------ reading

    def head_position(self) -> int:
        self._refresh()
        return self._head

    def stream_version(self, stream: str) -> int:
        self._refresh()
        return self._indexed_version(stream)

    def read_stream(
        self, stream: str, from_version: int = 1, limit: int | None = None
    ) -> list[pb.EventEnvelope]:
        self._refresh()
        positions_of = self._streams.get(stream)
        if positions_of is None:
            return []
        start = max(from_version, 1) - 1
        stop = len(positions_of) if limit is None else min(len(positions_of), start + limit)
        return [self._read_envelope(position) for position in positions_of[start:stop]]

    def read_all(
        self,
        from_position: int = 1,
        event_filter: EventFilter = ALL_EVENTS,
        limit: int | None = None,
        to_position: int | None = None,
    ) -> Iterable[pb.EventEnvelope]:
        self._refresh()
        last = self._head if to_position is None else min(to_position, self._head)
        matching = self._matching(max(from_position, 1), last, event_filter)
        return matching if limit is None else islice(matching, max(limit, 0))

    def _matching(self, first: int, last: int, event_filter: EventFilter) -> Iterator[pb.EventEnvelope]:
        """The events first..last that match, each record's CRC32C checked.

        One loop does framing, filtering and decoding: this is the replay hot path.
        """
        streams, categories, types = event_filter.streams, event_filter.categories, event_filter.event_types
        by_stream = bool(streams or categories)
        unpack, header_size, crc_start = wal.HEADER.unpack_from, wal.HEADER_SIZE, wal.PREFIX.size
        magic_expected, crc, parse = wal.MAGIC, crc32c.crc32c, pb.EventEnvelope.FromString
        position = first
        while position <= last:
            segment = self._segment_of(position)
            offset = segment.offsets[position - segment.first]
            segment_last = segment.first + len(segment.offsets) - 1
            stop = min(last, segment_last)
            end = segment.offsets[stop + 1 - segment.first] if stop < segment_last else segment.end
            want = READ_CHUNK
            while position <= stop:
                data = os.pread(segment.fd, min(want, end - offset), offset)
                view = memoryview(data)
                length = len(data)
                cursor = 0
                while position <= stop and length - cursor >= header_size:
                    magic, body_len, checksum, record_position, version, _, stream_len, _ = unpack(
                        data, cursor
                    )
                    record_end = cursor + header_size + body_len
                    if record_end > length:
                        break
                    if (
                        magic != magic_expected
                        or record_position != position
                        or crc(view[cursor + crc_start : record_end]) != checksum
                    ):
                        raise CorruptLogError(
                            segment.name, offset + cursor, position, "record damaged since the log was opened"
                        )
                    body = cursor + header_size
                    cursor = record_end
                    position += 1
                    if by_stream:
                        stream = data[body : body + stream_len].decode()
                        if streams and stream not in streams:
                            continue
                        if categories and stream.split("-", 1)[0] not in categories:
                            continue
                    envelope = parse(data[body + stream_len : record_end])
                    if types and envelope.event_type not in types:
                        continue
                    envelope.stream_version = version
                    envelope.global_position = record_position
                    yield envelope
                if cursor == 0 and position <= stop:
                    if length < header_size:
                        raise CorruptLogError(segment.name, offset, position, "record missing from the file")
                    want = header_size + wal.PREFIX.unpack_from(data, 0)[1]  # one record larger than a chunk
                else:
                    want = READ_CHUNK
                offset += cursor

    def _segment_of(self, position: int) -> _Segment:
        return self._segments[bisect.bisect_right(self._firsts, position) - 1]

    def _read_envelope(self, position: int) -> pb.EventEnvelope:
        for envelope in self._matching(position, position, ALL_EVENTS):
            return envelope
        raise EventStoreError(f"position {position} is not in the log")

    # ------------------------------------------------------------------ subscriptions

    def subscribe(
        self, from_position: int = 1, event_filter: EventFilter = ALL_EVENTS, timeout: float | None = 1.0
    ) -> FileSubscription:
        return FileSubscription(self, from_position, event_filter, timeout)

    def _wait_for(self, position: int, timeout: float) -> None:
        """Wait until the head reaches position, for at most timeout seconds."""
        with self._changed:
            self._waiting += 1
            try:
                if self._head < position:
                    self._changed.wait(min(timeout, CROSS_PROCESS_POLL_S))
            finally:
                self._waiting -= 1

    # ------------------------------------------------------------------ snapshots

    def _snapshot_path(self, stream: str) -> Path:
        return self.path / SNAPSHOT_DIR / f"{hashlib.sha256(stream.encode()).hexdigest()[:40]}.snap"

    def save_snapshot(self, snapshot: Snapshot) -> None:
        path = self._snapshot_path(snapshot.stream)
        path.parent.mkdir(exist_ok=True)
        stream = snapshot.stream.encode()
        rest = (
            SNAPSHOT_FIELDS.pack(snapshot.schema_version, snapshot.version, len(stream))
            + stream
            + snapshot.data
        )
        temporary = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        temporary.write_bytes(SNAPSHOT_PREFIX.pack(SNAPSHOT_MAGIC, crc32c.crc32c(rest)) + rest)
        os.replace(temporary, path)

    def load_snapshot(self, stream: str, schema_version: int) -> Snapshot | None:
        path = self._snapshot_path(stream)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        snapshot = _decode_snapshot(data)
        usable = (
            snapshot is not None
            and snapshot.stream == stream
            and snapshot.schema_version == schema_version
            and snapshot.version <= self.stream_version(stream)
        )
        if not usable:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return None
        return snapshot

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        if self._closed:
            return
        with self._write_lock:
            self._commit_queued()
            self._closed = True
            if self._unsynced:
                self._sync_unsynced()
            if self._segments:
                self._save_index()
        self._wake.set()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join()
        self._close_files()

    def _close_files(self) -> None:
        for segment in self._segments:
            os.close(segment.fd)
        self._segments.clear()
        self._firsts.clear()
        self._head_map.close()
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)

    def __enter__(self) -> FileStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _map_head(path: Path) -> mmap.mmap:
    """HEAD mapped shared; a new (or older, shorter) HEAD is zero-extended first, which no process
    can mind: the bytes already there are kept."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size < HEAD_STRUCT.size:
            os.ftruncate(fd, HEAD_STRUCT.size)
        return mmap.mmap(fd, HEAD_STRUCT.size)
    finally:
        os.close(fd)


def _decode_snapshot(data: bytes) -> Snapshot | None:
    if len(data) < SNAPSHOT_PREFIX.size:
        return None
    magic, checksum = SNAPSHOT_PREFIX.unpack_from(data)
    rest = data[SNAPSHOT_PREFIX.size :]
    if magic != SNAPSHOT_MAGIC or crc32c.crc32c(rest) != checksum or len(rest) < SNAPSHOT_FIELDS.size:
        return None
    schema_version, version, stream_len = SNAPSHOT_FIELDS.unpack_from(rest)
    start = SNAPSHOT_FIELDS.size
    stream = rest[start : start + stream_len].decode("utf-8", "replace")
    return Snapshot(stream, version, schema_version, rest[start + stream_len :])


class FileSubscription(PollingSubscription):
    """Reads from the log, then waits for in-process or cross-process appends."""

    def __init__(
        self, store: FileStore, from_position: int, event_filter: EventFilter, timeout: float | None
    ):
        super().__init__(from_position, event_filter, timeout)
        self._store = store

    def _fetch(self, max_events: int) -> list[pb.EventEnvelope] | None:
        head = self._store.head_position()
        if head < self._next:
            return None
        found: list[pb.EventEnvelope] = []
        scanned = head
        for envelope in self._store._matching(self._next, head, self._filter):
            found.append(envelope)
            if len(found) >= max_events:
                scanned = envelope.global_position
                break
        self._next = scanned + 1
        return found

    def _wait(self, remaining: float | None) -> None:
        self._store._wait_for(self._next, CROSS_PROCESS_POLL_S if remaining is None else remaining)
