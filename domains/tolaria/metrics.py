"""Prometheus metrics of the trainer (SPEC §11: epoch hook time among them)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EPOCH_SECONDS = Histogram(
    "esper_tolaria_epoch_duration_seconds",
    "Wall time of one epoch (train, validate, end-of-epoch hook)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
HOOK_SECONDS = Histogram(
    "esper_tolaria_epoch_hook_duration_seconds",
    "Wall time of the end-of-epoch hook (assembly, controller, command, guard); budget 18 ms",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.018, 0.05, 0.1, 0.5, 2.0),
)
HOOK_OVERRUNS = Counter(
    "esper_tolaria_epoch_hook_overruns_total", "End-of-epoch hooks that exceeded their budget"
)
EPOCHS = Counter("esper_tolaria_epochs_total", "Epochs completed (re-runs after a rollback included)")
CHECKPOINT_WRITE_SECONDS = Histogram(
    "esper_tolaria_checkpoint_write_seconds",
    "Time to write and fsync one checkpoint file",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
CHECKPOINT_BYTES = Gauge("esper_tolaria_checkpoint_size_bytes", "Size of the last checkpoint file")
ROLLBACKS = Counter("esper_tolaria_rollbacks_total", "Rollbacks applied", labelnames=("mode", "trigger"))
ROLLBACK_SECONDS = Histogram(
    "esper_tolaria_rollback_duration_seconds",
    "Time from a rollback's request to the restored state",
    labelnames=("mode",),
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 12.0),
)
TRAINING_LOSS = Gauge("esper_tolaria_training_loss_nats", "Mean training cross-entropy of the last epoch")
VALIDATION_ACCURACY = Gauge(
    "esper_tolaria_validation_accuracy_ratio", "Validation accuracy of the last epoch (0–1)"
)
