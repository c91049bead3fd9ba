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
the write mutex (into `_outcomes`, keyed by the request), so once the caller holds the mutex its request
has an outcome. `submit(...)` queues and returns a Future that the background flusher resolves. A request
is a tuple (events, expected, future or None, submitted at); nothing else is allocated per request but the
lists of its batch.

A segment is created when the current one would grow past `segment_size` (a batch is never split across
segments), with O_EXCL and an fsync of the directory; segmentio.py does the I/O on segments (and extends
them ahead of their data), planning.py checks and numbers each request's events. Metrics are counted per
group and flushed in batches (eventstore.metrics.Batched).

This module is the append hot path: per-event work happens in batch operations (eventstore.walbatch:
compiled in eventstore/walc/, or C-level maps in its pure-Python fallback, byte for byte the same):
reading each envelope's stream and id fingerprint, stream versions, framing with CRC32C, and indexing;
the collaborators are bound once per group, never per event.
The fsync policy and the OS-level helpers (preallocation, DiskFull) live in durability.py.
"""

from __future__ import annotations

import fcntl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future

from eventstore import metrics, walbatch
from eventstore.api import EventStoreError, Expected
from eventstore.file.durability import FsyncPolicy
from eventstore.file.head import HeadWaiters, SharedHead
from eventstore.file.planning import BACKEND, Planner
from eventstore.file.recovery import Recovery
from eventstore.file.segmentio import SegmentIO, Starts
from eventstore.file.segments import LogIndex, Segment
from leyline import pb

Request = tuple[list[pb.EventEnvelope], Mapping[str, Expected], "Future[list[int]] | None", float]
Outcome = list[int] | BaseException
NO_EXPECTATIONS: Mapping[str, Expected] = {}


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
        self.planner = Planner(log, read_envelope)
        self.io = SegmentIO(log, segment_size, preallocate)
        self.policy = policy
        self.segment_size = segment_size
        self.metrics = metrics.Batched(BACKEND)
        self.lock = threading.RLock()  # the write mutex
        self.closed = False
        self._refusal = (
            f"{log.path} is open read-only: open it without read_only to append" if read_only else None
        )
        self._durable = policy.kind != "interval"  # acknowledged appends are fdatasync'ed
        self._queue_lock = threading.Lock()
        self._queue: list[Request] = []
        self._outcomes: dict[int, Outcome] = {}  # id(request) -> outcome, for append's requests
        self._wake = threading.Event()
        self._flusher: threading.Thread | None = None
        self._last_sync = time.monotonic()
        if policy.kind == "interval" and not read_only:
            self._ensure_flusher()  # it fdatasyncs every interval even when nobody calls submit

    def append(
        self, events: Sequence[pb.EventEnvelope], expected: Mapping[str, Expected] | None = None
    ) -> list[int]:
        request = self._enqueue(events, expected, None)
        key = id(request)
        with self.lock:
            outcome = self._outcomes.pop(key, None)
            if outcome is None:
                self._commit_queued()
                outcome = self._outcomes.pop(key)
        if isinstance(outcome, BaseException):
            raise outcome
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
        if self.io.unsynced:
            self._sync()
        self.metrics.flush()
        if self.log.segments and self.log.segments[-1].allocated > self.log.segments[-1].end:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
            try:
                if not self.head.others_may_have_written(self.log.head):
                    self.io.cut_back(self.log.segments[-1])  # else the tail is another writer's now
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
        request = (list(events), dict(expected) if expected else NO_EXPECTATIONS, future, time.perf_counter())
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
                    self._sync()

    def _commit_queued(self) -> None:
        with self._queue_lock:
            requests, self._queue = self._queue, []
        if not requests:
            return
        outcomes: list[tuple[Request, Outcome]] = []
        events = 0
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX)  # inline: this runs on every append
            try:
                self.recovery.catch_up(repair=True)
                self.head.raise_writing_flag(self.log.head)
                events = self._write_group(requests, outcomes)
            finally:
                fcntl.flock(self.lock_fd, fcntl.LOCK_UN)
        except BaseException as exc:
            done = {id(request) for request, _ in outcomes}
            outcomes.extend((request, exc) for request in requests if id(request) not in done)
        now = time.perf_counter()
        latencies: list[float] = []
        for request, outcome in outcomes:
            future = request[2]
            if future is None:
                self._outcomes[id(request)] = outcome
            elif isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
            if not isinstance(outcome, BaseException):
                latencies.append(now - request[3])
        self.metrics.group(latencies, events, self.io.written)
        self.io.written = 0
        self.waiters.notify()

    def _write_group(self, requests: list[Request], outcomes: list[tuple[Request, Outcome]]) -> int:
        """Write (and under fsync always/batch, make durable) the group's new events, index them, publish
        the new head; each request's outcome goes to `outcomes`. The number of events written."""
        log, io, plan = self.log, self.io, self.planner.plan
        streams = log.streams
        always = self.policy.kind == "always"
        # index entries of the records written, applied once the group is durable: per request written,
        # its segment, its records' offsets (native uint32 bytes), its first position, streams and fps
        entries: list[tuple[Segment, bytes, int, list[str], walbatch.Fps]] = []
        versions: dict[str, int] = {}  # stream -> version counting what the group wrote so far
        group_ids: dict[str, int] = {}  # event id -> position, of the group's requests so far
        chunks: list[bytes] = []  # framed batches not written yet, `buffered` bytes in all
        buffered = 0
        segment = log.segments[-1] if log.segments else None
        first = next_position = log.head + 1
        written: list[tuple[Request, Outcome]] = []
        starts: Starts = {}
        try:
            last = requests[-1]
            for request in requests:
                try:
                    positions, batch = plan(
                        request[0], request[1], versions, group_ids, next_position, request is not last
                    )
                except EventStoreError as exc:
                    outcomes.append((request, exc))
                    continue
                if batch is None:
                    outcomes.append((request, positions))
                    continue
                names, fps, payloads = batch
                base = segment.end + buffered if segment is not None else 0
                records, offsets = walbatch.frame_new(
                    next_position, names, fps, payloads, versions, streams, base, request is not last
                )
                if segment is None or (base > 0 and base + len(records) > self.segment_size):
                    if segment is not None and chunks:
                        io.write(segment, chunks, starts)
                        chunks, buffered = [], 0
                    if segment is not None:
                        io.cut_back(segment)
                    segment = io.new_segment(next_position)
                    if base:  # at the new segment's start (a batch is never split)
                        offsets = walbatch.rebase(offsets, base)
                entries.append((segment, offsets, next_position, names, fps))
                chunks.append(records)
                buffered += len(records)
                next_position += len(payloads)
                written.append((request, positions))
                if always:
                    io.write(segment, chunks, starts)
                    chunks, buffered = [], 0
                    self._sync()
            if chunks and segment is not None:
                io.write(segment, chunks, starts)
            if self.policy.kind == "batch":
                self._sync()
        except BaseException:
            io.undo(starts)
            raise
        ids = log.ids
        for touched, offsets, position, names, fps in entries:
            touched.offsets.frombytes(offsets)
            walbatch.index_streams(streams, names, position)
            ids.add_many(fps, range(position, position + len(fps)))
        log.head = next_position - 1
        self.head.publish(log.head, self._durable)
        outcomes.extend(written)
        return next_position - first

    def _sync(self) -> None:
        self.io.sync()
        self._last_sync = time.monotonic()
        if not self._durable:
            self.head.mark_durable(self.log.head)  # interval: what was only written is durable now
