"""Prometheus metrics of the event store (SPEC §11: append latency, fsync batch size, bytes, recovery).

The file store's writer updates them a group at a time through `Batched` (one Prometheus operation costs
a lock and a few microseconds; an append made three to five of them): it counts into plain ints and adds
them to the metrics at most every FLUSH_S seconds, when its store closes, and before every collection of
the default registry (a collector registered ahead of the metrics flushes every live `Batched`), so a
scrape never sees them stale.
"""

from __future__ import annotations

import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Iterable

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.metrics_core import Metric

FLUSH_S = 1.0
_LIVE: weakref.WeakSet[Batched] = weakref.WeakSet()


class _FlushBeforeCollect:
    """Registered before the metrics below, so the registry collects it (and flushes) first."""

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterable[Metric]:
        for batched in list(_LIVE):
            batched.flush()
        return ()


REGISTRY.register(_FlushBeforeCollect())

APPEND_LATENCY = Histogram(
    "esper_eventstore_append_latency_seconds",
    "Time from an append's submission to its acknowledgement (durable under the store's fsync policy)",
    ["backend"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
FSYNC_BATCH_SIZE = Histogram(
    "esper_eventstore_fsync_batch_size_events",
    "Events made durable by one fsync (group commit; its _sum counts the events appended)",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000),
)
BYTES_WRITTEN = Counter("esper_eventstore_written_bytes", "Bytes written to the log", ["backend"])
DUPLICATES = Counter(
    "esper_eventstore_duplicate_events", "Appends of an event id already stored (no-ops)", ["backend"]
)
CONFLICTS = Counter(
    "esper_eventstore_version_conflicts", "Appends refused by an expected-version check", ["backend"]
)
RECOVERY_DURATION = Histogram(
    "esper_eventstore_recovery_duration_seconds",
    "Open-time recovery: scanning the log, truncating a torn tail, rebuilding indexes",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
TRUNCATED_BYTES = Counter("esper_eventstore_truncated_bytes", "Bytes of torn tail truncated by recovery")


class Batched:
    """A file store writer's updates of APPEND_LATENCY, FSYNC_BATCH_SIZE and BYTES_WRITTEN (label `backend`),
    counted in plain ints and flushed together (see the module docstring)."""

    def __init__(self, backend: str) -> None:
        self._latency = APPEND_LATENCY.labels(backend)
        self._bytes = BYTES_WRITTEN.labels(backend)
        self._latency_bounds = _upper_bounds(self._latency)
        self._batch_bounds = _upper_bounds(FSYNC_BATCH_SIZE)
        self._lock = threading.Lock()
        self._reset()
        self._flushed = time.monotonic()
        _LIVE.add(self)

    def _reset(self) -> None:
        self.latency_counts = [0] * len(self._latency_bounds)
        self.latency_sum = 0.0
        self.batch_counts = [0] * len(self._batch_bounds)
        self.batch_sum = 0
        self.written = 0

    def group(self, latencies: list[float], events: int, written: int) -> None:
        """One group commit: its requests' latencies (seconds), its events (0: nothing made durable by an
        fsync of this group) and the bytes it wrote."""
        with self._lock:
            counts, bounds = self.latency_counts, self._latency_bounds
            for latency in latencies:
                counts[bisect_left(bounds, latency)] += 1
            self.latency_sum += sum(latencies)
            if events:
                self.batch_counts[bisect_left(self._batch_bounds, events)] += 1
                self.batch_sum += events
            self.written += written
        if time.monotonic() - self._flushed >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            latency_counts, latency_sum = self.latency_counts, self.latency_sum
            batch_counts, batch_sum, written = self.batch_counts, self.batch_sum, self.written
            self._reset()
            self._flushed = time.monotonic()
        _add(self._latency, latency_counts, latency_sum)
        _add(FSYNC_BATCH_SIZE, batch_counts, batch_sum)
        if written:
            self._bytes.inc(written)


def _upper_bounds(histogram: Histogram) -> list[float]:
    bounds: list[float] = histogram._upper_bounds  # what observe() compares with
    return bounds


def _add(histogram: Histogram, counts: list[int], total: float) -> None:
    """Add counts[i] observations to bucket i and total to the sum: what as many observe() calls would do
    (Histogram keeps per-bucket counts and accumulates them when collected)."""
    if not any(counts):
        return
    for bucket, count in zip(histogram._buckets, counts, strict=True):
        if count:
            bucket.inc(count)
    histogram._sum.inc(total)
