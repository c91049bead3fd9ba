"""Prometheus metrics of the projections (SPEC §11: projection lag)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_APPLIED = Counter(
    "esper_projections_events_applied_total",
    "Events applied to a read model (an event counts once per projection that consumed it)",
    ["projection"],
)
BATCH_SECONDS = Histogram(
    "esper_projections_batch_seconds",
    "Time to apply one batch and commit it with its checkpoints",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
BATCH_EVENTS = Histogram(
    "esper_projections_batch_events",
    "Events per committed batch",
    buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000),
)
CHECKPOINT_POSITION = Gauge(
    "esper_projections_checkpoint_position",
    "Last log position a projection has applied",
    ["projection"],
)
LAG_EVENTS = Gauge(
    "esper_projections_lag_events",
    "Log positions between the head of the log and a projection's checkpoint",
    ["projection"],
)
LAG_SECONDS = Gauge(
    "esper_projections_lag_seconds",
    "Age of the newest event in the last committed batch when it was committed",
)
REBUILD_SECONDS = Histogram(
    "esper_projections_rebuild_seconds",
    "Duration of a full rebuild",
    ["mode"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 20, 60, 120, 300),
)
STOPPED = Gauge(
    "esper_projections_stopped",
    "1 while a projection is stopped at an event it cannot decode or apply (until `esper rebuild NAME`)",
    ["projection"],
)
