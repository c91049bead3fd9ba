"""The read-model tables (SPEC §6). alembic's migrations/ creates them; a test keeps the two in agreement.

Every row that comes from a run's events carries the log `position` of its event and `superseded_at`:
the position of the RollbackCompleted that superseded it (NULL while it stands). A row is visible as of
position P when `position <= P` and (`superseded_at` is NULL or `superseded_at > P`), which gives both the
rollback-aware present and time travel to any earlier position.

Slightly over ~400 lines on purpose: the whole schema in one module, read beside the migrations.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()
# On SQLite only a column declared exactly INTEGER PRIMARY KEY is the rowid (64-bit there); any other key
# type would add a second B-tree to every insert.
Position = BigInteger().with_variant(Integer(), "sqlite")


def _position() -> Column[int]:
    return Column("position", Position, primary_key=True, autoincrement=False)


def _superseded() -> Column[int]:
    return Column("superseded_at", BigInteger, nullable=True)


projection_checkpoints = Table(
    "projection_checkpoints",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at_ns", BigInteger, nullable=False),
    # Set while the projection is stopped at an event it cannot apply (migration 0003): that event's
    # position and type, and why; the checkpoint stays just below it until `esper rebuild NAME`.
    Column("error_position", BigInteger, nullable=True),
    Column("error_event_type", String(128), nullable=True),
    Column("error", Text, nullable=True),
)

# ---------------------------------------------------------------- runs

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(128), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("config_json", Text),
    Column("seed", BigInteger),
    Column("host_model", String(128)),
    Column("dataset", String(128)),
    Column("code_version", String(128)),
    Column("device", String(32)),
    Column("resumed", Boolean),
    Column("started_position", BigInteger),
    Column("started_at_ns", BigInteger),
    Column("last_epoch", Integer),
    Column("last_position", BigInteger, nullable=False),
    Column("ended_position", BigInteger),
    Column("epochs", Integer),
    Column("test_accuracy", Float),
    Column("parameters", BigInteger),
    Column("model_sha256", String(64)),
    Column("error", Text),
    Column("rollbacks", Integer, nullable=False),
)

run_epochs = Table(
    "run_epochs",
    metadata,
    _position(),
    Column("run_id", String(128), nullable=False),
    Column("epoch", Integer, nullable=False),
    Column("packet_id", String(16), nullable=False),
    Column("global_step", BigInteger),
    Column("training_loss", Float),
    Column("training_accuracy", Float),
    Column("validation_loss", Float),
    Column("validation_accuracy", Float),
    Column("test_accuracy", Float),
    Column("epoch_wall_ms", Float),
    Column("parameters", BigInteger),
    Column("packet", LargeBinary),  # the serialized SystemStatePacket (current schema), for audits
    Column("occurred_at_ns", BigInteger),
    _superseded(),
    Index("ix_run_epochs_run_epoch", "run_id", "epoch"),
)

run_hooks = Table(
    "run_hooks",
    metadata,
    _position(),
    Column("run_id", String(128), nullable=False),
    Column("epoch", Integer, nullable=False),
    Column("overrun", Boolean, nullable=False),
    Column("assembly_ms", Float),
    Column("controller_ms", Float),
    Column("command_ms", Float),
    Column("guard_ms", Float),
    Column("total_ms", Float),
    Column("budget_ms", Float),
    _superseded(),
    Index("ix_run_hooks_run", "run_id", "epoch"),
)

run_checkpoints = Table(
    "run_checkpoints",
    metadata,
    _position(),
    Column("run_id", String(128), nullable=False),
    Column("epoch", Integer, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("components", Text),
    Column("log_position", BigInteger),
    Column("size_bytes", BigInteger),
    Column("path", Text),
    _superseded(),
    Index("ix_run_checkpoints_run", "run_id", "epoch"),
)

run_rollbacks = Table(
    "run_rollbacks",
    metadata,
    _position(),
    Column("run_id", String(128), nullable=False),
    Column("event_type", String(32), nullable=False),
    Column("target_epoch", Integer),
    Column("target_position", BigInteger),
    Column("mode", String(16)),
    Column("reason", Text),
    Column("requested_by", String(128)),
    Column("checkpoint_hash", String(64)),
    Column("duration_ms", Float),
    Column("superseded_from", BigInteger),
    Column("superseded_to", BigInteger),
    _superseded(),
    Index("ix_run_rollbacks_run", "run_id"),
)

# ---------------------------------------------------------------- seed lifecycle

seeds = Table(
    "seeds",
    metadata,
    Column("stream", String(160), primary_key=True),
    Column("run_id", String(128), nullable=False),
    Column("slot", Integer, nullable=False),
    Column("seed_id", Integer),
    Column("stage", String(16), nullable=False),
    Column("blueprint_id", String(32)),
    Column("artifact_hash", String(64)),
    Column("command_id", String(128)),
    Column("epoch", Integer),
    Column("violations", Integer, nullable=False),
    Column("last_position", BigInteger, nullable=False),
    Index("ix_seeds_run", "run_id", "slot"),
)

seed_events = Table(
    "seed_events",
    metadata,
    _position(),
    Column("stream", String(160), nullable=False),
    Column("run_id", String(128), nullable=False),
    Column("slot", Integer, nullable=False),
    Column("seed_id", Integer),
    Column("event_type", String(32), nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("from_stage", String(16)),
    Column("to_stage", String(16)),
    Column("gates_json", Text),
    Column("command_id", String(128)),
    Column("correlation_id", String(128)),
    Column("causation_id", String(64)),
    Column("reason", Text),
    Column("epoch", Integer),
    Column("blueprint_id", String(32)),
    Column("artifact_hash", String(64)),
    Column("violations", Integer),
    Column("detail_json", Text),
    _superseded(),
    Index("ix_seed_events_stream", "stream", "position"),
    Index("ix_seed_events_command", "command_id"),
    Index("ix_seed_events_correlation", "correlation_id"),
    Index("ix_seed_events_blueprint", "blueprint_id"),
)

# ---------------------------------------------------------------- decisions and commands

decisions = Table(
    "decisions",
    metadata,
    _position(),
    Column("event_id", String(64), nullable=False),
    Column("run_id", String(128)),
    Column("epoch", Integer),
    Column("policy_name", String(64)),
    Column("policy_version", String(64)),
    Column("risk_level", String(16)),
    Column("latency_ms", Float),
    Column("command_id", String(128)),
    Column("action", String(64)),
    Column("conservative", Boolean),
    Column("reason", Text),
    Column("packet_id", String(16)),
    Column("inputs_json", Text),
    _superseded(),
    Index("ix_decisions_command", "command_id"),
    Index("ix_decisions_run", "run_id", "epoch"),
)

commands = Table(
    "commands",
    metadata,
    Column("command_id", String(128), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("run_id", String(128)),
    Column("epoch", Integer),
    Column("command_type", String(32)),
    Column("operation", String(32)),
    Column("target_slot", Integer),
    Column("target_seed_id", Integer),
    Column("blueprint_id", String(32)),
    Column("policy_version", String(64)),
    Column("issued_by", String(64)),
    Column("decision_event_id", String(64)),
    Column("issued_at_ms", BigInteger),
    Column("command_json", Text),
    _superseded(),
    Index("ix_commands_run", "run_id", "epoch"),
    Index("ix_commands_blueprint", "blueprint_id"),
)

# ---------------------------------------------------------------- field reports

field_reports = Table(
    "field_reports",
    metadata,
    Column("report_id", String(128), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("command_id", String(128)),
    Column("run_id", String(128)),
    Column("seed_id", Integer),
    Column("slot", Integer),
    Column("blueprint_id", String(32)),
    Column("outcome", String(16)),
    Column("delta_accuracy", Float),
    Column("delta_loss", Float),
    Column("delta_parameters", BigInteger),
    Column("policy_version", String(64)),
    Column("risk_at_decision", String(16)),
    Column("start_epoch", Integer),
    Column("end_epoch", Integer),
    Column("metrics_json", Text),
    Column("occurred_at_ns", BigInteger, nullable=False),
    _superseded(),
    Column("seed_stage", String(16)),  # a germination's report: where its seed ended (migration 0004)
    Column("seed_reason", Text),
    Index("ix_field_reports_command", "command_id"),
    Index("ix_field_reports_seed", "run_id", "slot"),
    Index("ix_field_reports_time", "occurred_at_ns"),
)

# ---------------------------------------------------------------- blueprint catalogue

blueprints = Table(
    "blueprints",
    metadata,
    Column("blueprint_id", String(32), primary_key=True),
    Column("name", String(64)),
    Column("tier", String(16)),
    Column("risk", Float),
    Column("curriculum_stage", Integer),
    Column("slot_kinds", Text),
    Column("parameter_ranges_json", Text),
    Column("requires_approval", Boolean),
    Column("approved", Boolean),
    Column("quarantine_only", Boolean),
    Column("conservative_pool", Boolean),
    Column("description", Text),
    Column("registered_position", BigInteger),
    Column("compile_status", String(16)),
    Column("last_job_id", String(128)),
    Column("artifact_hash", String(64)),
    Column("updated_position", BigInteger, nullable=False),
)

compile_jobs = Table(
    "compile_jobs",
    metadata,
    Column("job_id", String(128), primary_key=True),
    Column("blueprint_id", String(32)),
    Column("strategy", String(32)),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer),
    Column("parameters_json", Text),
    Column("slot_shape", Text),
    Column("last_error", Text),
    Column("artifact_hash", String(64)),
    Column("duration_ms", Float),
    Column("queued_position", BigInteger),
    Column("updated_position", BigInteger, nullable=False),
    Index("ix_compile_jobs_blueprint", "blueprint_id"),
)

compile_events = Table(
    "compile_events",
    metadata,
    _position(),
    Column("job_id", String(128), nullable=False),
    Column("event_type", String(32), nullable=False),
    Column("attempt", Integer),
    Column("error", Text),
    Column("will_retry", Boolean),
    Column("artifact_hash", String(64)),
    Index("ix_compile_events_job", "job_id", "position"),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("artifact_hash", String(64), primary_key=True),
    Column("blueprint_id", String(32)),
    Column("size_bytes", BigInteger),
    Column("strategy", String(32)),
    Column("slot_shape", Text),
    Column("job_id", String(128)),
    Column("status", String(16), nullable=False),
    Column("error", Text),
    Column("stored_position", BigInteger),
    Column("updated_position", BigInteger, nullable=False),
    Index("ix_artifacts_blueprint", "blueprint_id"),
)

# ---------------------------------------------------------------- policies

policies = Table(
    "policies",
    metadata,
    Column("version", String(64), primary_key=True),
    Column("policy_name", String(64)),
    Column("status", String(16), nullable=False),
    Column("content_hash", String(64)),
    Column("parent_version", String(64)),
    Column("artifact_path", Text),
    Column("lora", Boolean),
    Column("training_metrics_json", Text),
    Column("steps", BigInteger),
    Column("experiences", Integer),
    Column("validation_passed", Boolean),
    Column("validation_checks_json", Text),
    Column("validation_reason", Text),
    Column("active", Boolean, nullable=False),
    Column("updated_position", BigInteger, nullable=False),
)

policy_events = Table(
    "policy_events",
    metadata,
    _position(),
    Column("version", String(64), nullable=False),
    Column("event_type", String(32), nullable=False),
    Column("detail_json", Text),
    Column("epoch", Integer),
    Column("run_id", String(128)),
    Index("ix_policy_events_version", "version", "position"),
)

# ---------------------------------------------------------------- alerts

alerts = Table(
    "alerts",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("severity", String(16)),
    Column("summary", Text),
    Column("labels_json", Text),
    Column("value", Float),
    Column("fired_position", BigInteger),
    Column("resolved_position", BigInteger),
    Column("updated_position", BigInteger, nullable=False),
)

alert_events = Table(
    "alert_events",
    metadata,
    _position(),
    Column("name", String(128), nullable=False),
    Column("event_type", String(16), nullable=False),
    Column("severity", String(16)),
    Column("summary", Text),
    Column("value", Float),
    Index("ix_alert_events_name", "name", "position"),
)
