"""The group-commit writer: every append of a `FileStore` goes through it.

Requests are queued, and whichever thread holds the write mutex (a caller of `append`, or the background
flusher that serves `submit`) takes *all* queued requests, takes the process-shared file lock, catches up
with what other processes appended, checks expected versions and event ids, writes every request's records
with one `pwrite` and makes them durable with one `fdatasync`, then publishes the new head and resolves the
requests. fsync policies:

- `always`: every request is written and fdatasync'ed on its own before it is acknowledged;
- `batch` (default): one fdatasync per group of queued requests; still durable when acknowledged;
- `interval:<ms>`: requests are acknowledged once written (they survive a crash of the process, not of the
  machine); the background flusher fdatasyncs at most every <ms> milliseconds.

`append(...)` queues its request and commits the queue inline: under load, one fsync covers every caller
that queued meanwhile. It needs no Future: whoever commits resolves every request it took before releasing
the write mutex, so once the caller holds the mutex its request has an outcome. `submit(...)` queues and
returns a Future that the background flusher resolves.

A segment is created when the current one would grow past `segment_size` (a batch is never split across
segments), with O_EXCL and an fsync of the directory. `preallocate=True` (the default) extends the segment
with written zeros ahead of its data (EXTEND_AHEAD at a time, on a write smaller than EXTEND_BELOW): an
fdatasync of records written into that space need not also grow the file. The file size is then no
longer the end of the data; the records and the committed heads are (wal.Scan ends at the zeros). A
segment is cut back to its data when the log rolls to the next one and when its writer closes without
another process having appended meanwhile.

This module is the append hot path: per-event work happens in batch operations (eventstore.walbatch:
compiled in eventstore/walc/, or C-level maps in its pure-Python fallback, byte for byte the same):
reading each envelope's stream and id fingerprint, stream versions, framing with CRC32C, and indexing;
the collaborators are bound once per group, never per event.
The fsync policy and the OS-level helpers (preallocation, DiskFull) live in durability.py.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from operator import attrgetter
from typing import NamedTuple

import crc32c

from eventstore import metrics, walbatch
from eventstore.api import EventStoreError, Expected
from eventstore.file.durability import EXTEND_AHEAD, EXTEND_BELOW, FsyncPolicy, raise_typed
from eventstore.file.head import HeadWaiters, SharedHead
from eventstore.file.recovery import Recovery
from eventstore.file.segments import LogIndex, Segment, fsync_directory
from leyline import pb

BACKEND = "file"
SERIALIZE = pb.EventEnvelope.SerializeToString
EVENT_ID = attrgetter("event_id")
APPEND_LATENCY = metrics.APPEND_LATENCY.labels(BACKEND)
BYTES_WRITTEN = metrics.BYTES_WRITTEN.labels(BACKEND)


@dataclass(slots=True)
class Request:
    events: list[pb.EventEnvelope]
    expected: dict[str, Expected]
    future: Future[list[int]] | None  # submit's; append reads the outcome
    submitted: float = field(default_factory=time.perf_counter)
    outcome: list[int] | BaseException | None = None


class _Batch(NamedTuple):
    """The new events of one request, in position order from `first`: what is framed and indexed."""

    first: int
    versions: list[int]
    fps: list[int]
    streams: list[str]
    payloads: list[bytes]


@dataclass(slots=True)
class _Pending:
    """Index entries of records written in the current group, applied once the group is durable."""

    # per request written: its segment, its records' offsets (native uint32 bytes) and its new events
    entries: list[tuple[Segment, bytes, _Batch]] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)


class Writer:
    """Appends to the log of `log` under the process-shared lock `lock_fd`.

    `read_envelope(position)` reads a committed event (to confirm an idempotency-index hit).
    """

    def __init__(
        self,
        log: LogIndex,
        head: SharedHead,
        recovery: Recovery,
        waiters: HeadWaiters,
        lock_fd: int,
        read_envelope: Callable[[int], pb.EventEnvelope],
        *,
        policy: FsyncPolicy,
        segment_size: int,
        preallocate: bool,
        read_only: bool = False,
    ) -> None:
        self.log = log
        self.head = head
        self.recovery = recovery
        self.waiters = waiters
        self.lock_fd = lock_fd
        self.read_envelope = read_envelope
        self.policy = policy
        self.segment_size = segment_size
        self.extend_ahead = preallocate
        self.lock = threading.RLock()  # the write mutex
        self.closed = False
        self._refusal = (
            f"{log.path} is open read-only: open it without read_only to append" if read_only else None
        )
        self._durable = policy.kind != "interval"  # acknowledged appends are fdatasync'ed
        self._queue_lock = threading.Lock()
        self._queue: list[Request] = []
        self._wake = threading.Event()
        self._flusher: threading.Thread | None = None
        self._unsynced: set[Segment] = set()
        self._last_sync = time.monotonic()
        if policy.kind == "interval" and not read_only:
            self._ensure_flusher()  # it fdatasyncs every interval even when nobody calls submit

    def append(
        self, events: Sequence[pb.EventEnvelope], expected: Mapping[str, Expected] | None = None
    ) -> list[int]:
        request = self._enqueue(events, expected, None)
        with self.lock:
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

    def close(self) -> None:
        """Commit what is queued, make everything durable and stop the flusher; the caller then saves the
        index checkpoint while it still holds `lock` (see FileStore.close)."""
        self._commit_queued()
        self.closed = True
        if self._unsynced:
            self._sync_unsynced()
        if self.log.segments and self.log.segments[-1].allocated > self.log.segments[-1].end:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
            try:
                if not self.head.others_may_have_written(self.log.head):
                    self._cut_back(self.log.segments[-1])  # else the tail is another writer's now
            finally:
                fcntl.flock(self.lock_fd, fcntl.LOCK_UN)

    def join_flusher(self) -> None:
        self._wake.set()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join()

    def _enqueue(
        self,
        events: Sequence[pb.EventEnvelope],
        expected: Mapping[str, Expected] | None,
        future: Future[list[int]] | None,
    ) -> Request:
        if self.closed or self._refusal is not None:
            raise EventStoreError(self._refusal or "the store is closed")
        request = Request(list(events), dict(expected or {}), future)
        with self._queue_lock:
            self._queue.append(request)
        return request

    def _ensure_flusher(self) -> None:
        if self._flusher is None:
            with self.lock:
                if self._flusher is None:
                    self._flusher = threading.Thread(
                        target=self._flush_loop, name="eventstore-flusher", daemon=True
                    )
                    self._flusher.start()

    def _flush_loop(self) -> None:
        while not self.closed:
            period = self.policy.interval_s if self.policy.kind == "interval" else None
            self._wake.wait(period)
            self._wake.clear()
            with self.lock:
                if self.closed:
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
        outcomes: list[tuple[Request, list[int] | BaseException]] = []
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX)  # inline: this runs on every append
            try:
                self.recovery.catch_up(repair=True)
                self.head.raise_writing_flag(self.log.head)
                self._write_group(requests, outcomes)
            finally:
                fcntl.flock(self.lock_fd, fcntl.LOCK_UN)
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
        self.waiters.notify()

    def _write_group(
        self, requests: list[Request], outcomes: list[tuple[Request, list[int] | BaseException]]
    ) -> None:
        log = self.log
        pending = _Pending()
        chunks: list[bytes] = []  # framed batches not written yet, `buffered` bytes in all
        buffered = 0
        segment = log.segments[-1] if log.segments else None
        next_position = log.head + 1
        written: list[tuple[Request, list[int]]] = []
        group_events = 0
        starts: dict[Segment, tuple[int, int]] = {}
        try:
            last = requests[-1]
            for request in requests:
                try:
                    positions, batch = self._plan(request, pending, next_position, request is not last)
                except EventStoreError as exc:
                    outcomes.append((request, exc))
                    continue
                if batch is None:
                    outcomes.append((request, positions))
                    continue
                base = segment.end + buffered if segment is not None else 0
                records, offsets = walbatch.frame_batch(
                    next_position, batch.versions, batch.fps, batch.streams, batch.payloads, base
                )
                if segment is None or (base > 0 and base + len(records) > self.segment_size):
                    if segment is not None and chunks:
                        self._write(segment, chunks, starts)
                        chunks, buffered = [], 0
                    if segment is not None:
                        self._cut_back(segment)
                    segment = self._new_segment(next_position)
                    if base:  # framed again at the new segment's start (a batch is never split)
                        records, offsets = walbatch.frame_batch(
                            next_position, batch.versions, batch.fps, batch.streams, batch.payloads, 0
                        )
                pending.entries.append((segment, offsets, batch))
                chunks.append(records)
                buffered += len(records)
                next_position += len(batch.payloads)
                group_events += len(batch.payloads)
                written.append((request, positions))
                if self.policy.kind == "always":
                    self._write(segment, chunks, starts)
                    chunks, buffered = [], 0
                    self._sync_unsynced()
            if chunks and segment is not None:
                self._write(segment, chunks, starts)
            if self.policy.kind == "batch":
                self._sync_unsynced()
        except BaseException:
            for touched, (start, crc) in starts.items():
                os.ftruncate(touched.fd, start)
                touched.end, touched.crc, touched.allocated = start, crc, start
            raise
        if group_events:
            metrics.FSYNC_BATCH_SIZE.observe(group_events)
        streams = log.streams
        for touched_segment, offsets, batch in pending.entries:
            touched_segment.offsets.frombytes(offsets)
            walbatch.index_streams(streams, batch.streams, batch.first)
            log.ids.add_many(batch.fps, range(batch.first, batch.first + len(batch.fps)))
        log.head = next_position - 1
        self.head.publish(log.head, self._durable)
        outcomes.extend(written)

    def _plan(
        self, request: Request, pending: _Pending, next_position: int, others_follow: bool
    ) -> tuple[list[int], _Batch | None]:
        """Positions of the request's events, and the batch of new ones to frame (None if there is none).

        Per-event work is done a batch at a time (walbatch: compiled, or C-level maps and set operations).
        """
        events = request.events
        if not events:
            return [], None
        payloads = list(map(SERIALIZE, events))
        names, fps = walbatch.keys(events, payloads)
        hits = self.log.ids.candidates(fps)
        pending_ids = pending.ids
        # distinct fingerprints mean distinct ids; the ids themselves are read only where needed
        fast = not hits and walbatch.distinct(fps)
        ids = list(map(EVENT_ID, events)) if pending_ids or others_follow or not fast else []
        if fast and (not pending_ids or pending_ids.keys().isdisjoint(ids)):
            positions = list(range(next_position, next_position + len(events)))  # the common case
        else:
            fresh, positions = self._deduplicate(ids, hits, pending_ids, next_position)
            if not fresh:
                metrics.DUPLICATES.labels(BACKEND).inc(len(events))
                return positions, None
            if len(fresh) < len(events):
                metrics.DUPLICATES.labels(BACKEND).inc(len(events) - len(fresh))
                ids = [ids[index] for index in fresh]
                names = [names[index] for index in fresh]
                fps = [fps[index] for index in fresh]
                payloads = [payloads[index] for index in fresh]
        for stream, expectation in request.expected.items():
            try:
                expectation.check(stream, self._version(stream, pending))
            except EventStoreError:
                metrics.CONFLICTS.labels(BACKEND).inc()
                raise
        if others_follow:  # later requests of the group check their ids against these
            pending_ids.update(zip(ids, range(next_position, next_position + len(ids)), strict=True))
        versions = walbatch.next_versions(names, pending.versions, self.log.streams)
        return positions, _Batch(next_position, versions, fps, names, payloads)

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
        return self.log.stream_version(stream) if version is None else version

    def _confirm(self, candidates: list[int], event_id: str) -> int | None:
        """The candidate position whose stored event really has this id (fingerprints can collide)."""
        for position in candidates:
            if position <= self.log.head and self.read_envelope(position).event_id == event_id:
                return position
        return None

    def _new_segment(self, first: int) -> Segment:
        try:
            segment = self.log.open_segment(first, create=True)
            fsync_directory(self.log.path)
        except OSError as exc:
            raise_typed(exc, self.log.segment_path(first))
        return segment

    def _write(self, segment: Segment, chunks: list[bytes], starts: dict[Segment, tuple[int, int]]) -> None:
        buffer = chunks[0] if len(chunks) == 1 else b"".join(chunks)  # one request's batch: no copy
        starts.setdefault(segment, (segment.end, segment.crc))
        try:
            written = os.pwrite(segment.fd, buffer, segment.end)
            while written < len(buffer):
                written += os.pwrite(segment.fd, memoryview(buffer)[written:], segment.end + written)
        except OSError as exc:
            raise_typed(exc, self.log.segment_path(segment.first))
        segment.crc = crc32c.crc32c(buffer, segment.crc)
        segment.end += len(buffer)
        self._unsynced.add(segment)
        BYTES_WRITTEN.inc(len(buffer))
        if (
            self.extend_ahead
            and len(buffer) < EXTEND_BELOW
            and segment.allocated < segment.end < self.segment_size
        ):
            self._extend(segment)

    def _extend(self, segment: Segment) -> None:
        """Write zeros ahead of the segment's data (best effort: a disk too full for them fails the next
        record's write instead, as it would without them)."""
        ahead = min(EXTEND_AHEAD, self.segment_size - segment.end)
        try:
            segment.allocated = segment.end + os.pwrite(segment.fd, bytes(ahead), segment.end)
        except OSError:
            segment.allocated = segment.end

    def _cut_back(self, segment: Segment) -> None:
        """Cut the zeros extended ahead off a segment this writer leaves (under the file lock)."""
        if segment.allocated > segment.end:
            os.ftruncate(segment.fd, segment.end)
            segment.allocated = segment.end

    def _sync_unsynced(self) -> None:
        for segment in self._unsynced:
            try:
                os.fdatasync(segment.fd)
            except OSError as exc:
                raise_typed(exc, self.log.segment_path(segment.first))
        self._unsynced.clear()
        self._last_sync = time.monotonic()
        if not self._durable:
            self.head.mark_durable(self.log.head)  # interval: what was only written is durable now
