"""The alert rules' names, severities and thresholds: one place for both the Prometheus rules
(ops/prometheus/esper.rules.yml, whose test checks it uses these numbers) and the event-stream conditions."""

from __future__ import annotations

from domains.oona.routing import Thresholds

TRAINING_LATENCY_HIGH = "training_latency_high"
KASMINA_ISOLATION_VIOLATION = "kasmina_isolation_violation"
OONA_QUEUE_DEPTH = "oona_queue_depth"
TEZZERET_COMPILE_RETRY_HIGH = "tezzeret_compile_retry_high"
TRAINING_LOSS_EXPLOSION = "training_loss_explosion"
MIRROR_REDIS_DOWN = "mirror_redis_down"

SEVERITY = {
    TRAINING_LATENCY_HIGH: "warning",
    KASMINA_ISOLATION_VIOLATION: "critical",
    OONA_QUEUE_DEPTH: "warning",
    TEZZERET_COMPILE_RETRY_HIGH: "warning",
    TRAINING_LOSS_EXPLOSION: "critical",
    MIRROR_REDIS_DOWN: "critical",
}

DEFAULT_HOOK_BUDGET_MS = 18.0  # used when an EpochHookTimed event carries no budget
HOOK_QUANTILE = 0.95
# the latest end-of-epoch hooks of a run whose p95 is compared with the budget; one slow hook among them is
# tolerated (the nearest-rank p95 of 20 is the 19th)
HOOK_WINDOW = 20
HOOK_MIN_SAMPLES = 5
ISOLATION_CLEAR_EPOCHS = 3
EXPLOSION_CLEAR_EPOCHS = 3  # epochs after the guard's last rollback until training_loss_explosion resolves
EXPLOSION_WINDOW_S = 600  # the Prometheus rule's window over the guard's rollbacks
RETRY_THRESHOLD = 3
RETRY_WINDOW_S = 900
OONA_DEPTH_THRESHOLD = Thresholds().reroute_above  # where the bus starts rerouting normal traffic
SLO = 0.99  # of end-of-epoch hooks within budget, of time with the mirror lag under its bound
MIRROR_LAG_SLO_POSITIONS = 1000  # mirror lag above this counts against the mirror's error budget
# the TelemetryReported source of the writing process's Redis mirror: its health changes (down at the first
# failed Redis call, healthy once caught up again) are the input of mirror_redis_down
MIRROR_TELEMETRY_SOURCE = "eventstore.mirror"
MIRROR_TELEMETRY_STREAM = "telemetry-mirror"
MIRROR_LAG_METRIC = "esper_eventstore_mirror_lag_positions"  # the lag a mirror health report carries
