"""Prometheus metrics of the Redis mirror (SPEC §11: mirror lag and throughput)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MIRROR_LAG = Gauge(
    "esper_eventstore_mirror_lag_positions",
    "Global positions committed to the log but not yet mirrored to Redis",
)
MIRROR_DOWN = Gauge(
    "esper_eventstore_mirror_redis_down",
    "1 from the mirror's first failed Redis call until it has caught up with the log again, else 0",
)
MIRROR_POSITION = Gauge(
    "esper_eventstore_mirror_position",
    "Last global position the Redis mirror holds",
)
MIRROR_EVENTS = Counter(
    "esper_eventstore_mirror_events_total",
    "Events mirrored to Redis (rate() of it is the mirror throughput)",
)
MIRROR_REJECTED = Counter(
    "esper_eventstore_mirror_rejected_entries_total",
    "Stream entries Redis already held (id at or below the stream's top): idempotent re-adds",
)
MIRROR_BATCH_SECONDS = Histogram(
    "esper_eventstore_mirror_batch_seconds",
    "Time to mirror one batch of events to Redis",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
MIRROR_RESEEDS = Counter(
    "esper_eventstore_mirror_reseeds_total",
    "Times the mirror found Redis had lost (part of) its data and re-mirrored from the log",
    ["reason"],
)
MIRROR_REDIS_ERRORS = Counter(
    "esper_eventstore_mirror_redis_errors_total",
    "Redis connection errors met by the mirror (it backs off and retries)",
)
MIRROR_TRIMMED = Counter(
    "esper_eventstore_mirror_trimmed_entries_total",
    "Entries trimmed (XTRIM MINID) behind the slowest consumer group",
)
