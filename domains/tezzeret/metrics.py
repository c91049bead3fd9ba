"""Prometheus metrics of Tezzeret, the compiler (SPEC §11: compile retries)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

COMPILE_DURATION = Histogram(
    "esper_tezzeret_compile_duration_seconds",
    "Duration of one successful compile attempt",
    ["strategy"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
)
JOBS = Counter("esper_tezzeret_jobs_total", "Compile jobs by outcome", ["outcome"])
RETRIES = Counter("esper_tezzeret_compile_retries_total", "Failed compile attempts that will be retried")
RESUMED = Counter(
    "esper_tezzeret_jobs_resumed_total", "Unfinished jobs picked up again from the log after a restart"
)
# the recovery evidence of tezzeret_compile_retry_high: a compile that succeeded after the latest retry
LAST_RETRY = Gauge(
    "esper_tezzeret_last_retry_timestamp_seconds",
    "Unix time of the latest failed compile attempt to be retried",
)
LAST_SUCCESS = Gauge(
    "esper_tezzeret_last_success_timestamp_seconds", "Unix time of the latest successful compile attempt"
)
