"""Prometheus metrics of the event store (SPEC §11: append latency, fsync batch size, bytes, recovery)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
