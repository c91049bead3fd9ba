"""Nissa: alerts of record (SPEC §11).

The conditions of the Prometheus alert rules in ops/prometheus/ that have their input in the log are
evaluated on the event stream as well (`conditions`): training_latency_high (p95 of a run's recent
end-of-epoch hooks above its budget), kasmina_isolation_violation (a gradient leak in a run until
ISOLATION_CLEAR_EPOCHS calm epochs pass), training_loss_explosion (the trainer's guard rolled a run
back, until EXPLOSION_CLEAR_EPOCHS steady epochs pass) and tezzeret_compile_retry_high (more than
RETRY_THRESHOLD compile retries within RETRY_WINDOW_S of log time). A change of state is an AlertFired or
AlertResolved event appended to the log (the alerts projection and `esper audit` show them);
`service.Nissa` follows the log, appends them and hands each new one to its channels (`routing`: a
webhook, a file). oona_queue_depth and the error-budget burn alerts are Prometheus-only: their inputs
(queue depth, rates) are sampled gauges, not events of record.
"""
