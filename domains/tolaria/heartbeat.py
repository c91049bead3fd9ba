"""Every rank's heartbeat through the rendezvous store: a rank that hangs fails the run in seconds.

A daemon thread per rank writes `esper/beat/<rank>` every BEAT_S: a counter, and `ok`, or `hung:<epoch>`
once the rank's own work at a boundary (`working`: rank 0's decision, another rank's applying it) has
stopped: its process spent less than IDLE_CPU_S of CPU over the last IDLE_S (blocked for good: a deadlock,
a wait that never ends), or the work has run past BOUNDARY_DEADLINE_S (a loop that never ends; the
controller's own decision timeout comes long before). A hung rank's thread fails the run itself: it names
itself in the store, records RunFailed (rank 0 writes the log; its main thread is the one that hangs),
says so on stderr and ends the process. So does every rank once another has named a failure in the store
(a rank 0 that hangs anywhere, and that a rank timed out waiting for, records RunFailed so). While this
rank's main thread is inside a collective (`waiting`), its thread also reads the other ranks' beats: a
rank that says it is hung, or whose beat has not changed for STALE_S (its process frozen), fails the run
the same way with RankHung naming it. A rank that dies closes its sockets and is caught by the collectives
themselves (RankLost).

Legitimate slow work does not trip it: it uses the CPU (a seed's first compile, on the main thread or on
compile-ahead's, a graft, the controller under its own 2 s timeout), however slowly on a loaded machine,
and time spent waiting for other ranks is not this rank's work.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import torch.distributed as dist

from domains.tolaria.collective import RankFailure, RankHung, RankLost

BEAT_S = 0.25
IDLE_S = 4.0  # boundary work whose process spent less than IDLE_CPU_S of CPU over this long is blocked
IDLE_CPU_S = 0.05  # ~1 % of a core: a process that runs at all, on a loaded machine, uses more
BOUNDARY_DEADLINE_S = 60.0  # boundary work that runs (the CPU busy) past this never ends
STALE_S = 6.0  # a beat unchanged this long: the rank's process no longer runs
FAILED_KEY = "esper/failed"  # "<rank>:<epoch>" (RankLost) or "<rank>:<epoch>:hung" (RankHung)


def beat_key(rank: int) -> str:
    return f"esper/beat/{rank}"


def named_failure(named: str, reason: str) -> RankFailure:
    """The failure FAILED_KEY's value names: RankHung when its rank hung (named by its own heartbeat) or
    beat without reaching a collective that timed out, else RankLost."""
    rank, epoch, *kind = named.split(":")
    if kind == ["hung"]:
        return RankHung(int(rank), int(epoch), "its own work stopped (named by its heartbeat)")
    if kind:
        return RankHung(int(rank), int(epoch), "its process beats but did not reach the collective")
    return RankLost(int(rank), int(epoch), reason)


class Heartbeat:
    """One rank's beat, the deadline of its own boundary work, and its watch over the others' beats."""

    def __init__(
        self,
        store: dist.Store,
        rank: int,
        world_size: int,
        exit_process: Callable[[int], None] = os._exit,
    ) -> None:
        self.rank = rank
        self.world_size = world_size
        self._store = store
        self._exit = exit_process
        self._working: tuple[int, float] | None = None  # (epoch, deadline) of this rank's own work
        self._cpu: deque[tuple[float, float]] = deque()  # (when, process CPU s) while it works
        self._waiting: int | None = None  # the epoch of the collective this rank's main thread is in
        self._record: Callable[[BaseException], None] | None = None
        self._seen: dict[int, tuple[str, float]] = {}  # rank → (its last beat, when it last changed)
        self._count = 0
        self._fatal = threading.Lock()  # taken once, by whichever thread fails the run first
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="esper-heartbeat", daemon=True)
        self._thread.start()

    @contextmanager
    def working(self, epoch: int, record: Callable[[BaseException], None]) -> Iterator[None]:
        self._record = record
        self._cpu = deque([(time.monotonic(), time.process_time())])
        self._working = (epoch, time.monotonic() + BOUNDARY_DEADLINE_S)
        try:
            yield
        finally:
            self._working = None

    @contextmanager
    def waiting(self, epoch: int) -> Iterator[None]:
        self._seen = {}
        self._waiting = epoch
        try:
            yield
        finally:
            self._waiting = None

    def claim(self) -> bool:
        """Whether the caller is the first to fail the run in this process (the main thread asks before
        raising; False means this thread is already failing it and ends the process)."""
        return self._fatal.acquire(blocking=False)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * BEAT_S)

    def _run(self) -> None:
        while not self._stop.wait(BEAT_S):
            try:
                failure = self._tick(time.monotonic())
            except (RuntimeError, ValueError):  # the store does not answer: the collectives will say so
                continue
            if failure is not None:
                self._fail(failure)
                return

    def _tick(self, now: float) -> RankFailure | None:
        self._count += 1
        working = self._working
        reason = self._stopped(working[1], now) if working is not None else None
        if working is not None and reason is not None:
            self._store.set(beat_key(self.rank), f"{self._count}:hung:{working[0]}")
            return RankHung(self.rank, working[0], reason)
        self._store.set(beat_key(self.rank), f"{self._count}:ok:0")
        if self._store.check([FAILED_KEY]):  # another rank failed the run (this one's main thread may hang)
            return named_failure(self._store.get(FAILED_KEY).decode(), "named by another rank")
        waiting = self._waiting
        if waiting is None:
            return None
        for rank in range(self.world_size):
            if rank == self.rank or not self._store.check([beat_key(rank)]):
                continue
            beat = self._store.get(beat_key(rank)).decode()
            _, status, hung_at = beat.split(":")
            if status == "hung":
                return RankHung(rank, int(hung_at), "its own work at the boundary stopped (its heartbeat)")
            last = self._seen.get(rank)
            if last is None or last[0] != beat:
                self._seen[rank] = (beat, now)
            elif now - last[1] > STALE_S:
                return RankHung(rank, waiting, f"its heartbeat stopped for {STALE_S:g} s")
        return None

    def _stopped(self, deadline: float, now: float) -> str | None:
        """Why this rank's boundary work counts as hung now, if it does."""
        if now > deadline:
            return f"its own work at the boundary ran past {BOUNDARY_DEADLINE_S:g} s"
        samples = self._cpu
        samples.append((now, time.process_time()))
        while len(samples) > 2 and now - samples[1][0] >= IDLE_S:
            samples.popleft()
        (since, cpu_then), (_, cpu_now) = samples[0], samples[-1]
        if now - since >= IDLE_S and cpu_now - cpu_then < IDLE_CPU_S:
            used = f"{cpu_now - cpu_then:.3f} s of CPU in {now - since:.1f} s"
            return f"its own work at the boundary stopped ({used})"
        return None

    def _fail(self, failure: RankFailure) -> None:
        """Name the hung rank for the others, record RunFailed (the leading rank's record writes it),
        say so, and end the process: its main thread is hung, or blocked in a collective that waits on
        a hung rank."""
        if not self.claim():
            return  # the main thread is failing the run already
        with suppress(RuntimeError):
            self._store.compare_set(FAILED_KEY, "", f"{failure.rank}:{failure.epoch}:hung")
        print(f"esper: {type(failure).__name__}: {failure}", file=sys.stderr, flush=True)
        try:
            if self._record is not None:
                self._record(failure)
            time.sleep(4 * BEAT_S)  # the others read the store (this process may host it) before it ends
        finally:
            self._exit(1)
