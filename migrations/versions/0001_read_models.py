"""read models: runs, seed lifecycle, decisions, field reports, blueprint catalogue, policies, alerts

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-24 00:02:48.640037
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_events",
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("event_type", sa.String(length=16), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("position"),
    )
    with op.batch_alter_table("alert_events", schema=None) as batch_op:
        batch_op.create_index("ix_alert_events_name", ["name", "position"], unique=False)

    op.create_table(
        "alerts",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("labels_json", sa.Text(), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("fired_position", sa.BigInteger(), nullable=True),
        sa.Column("resolved_position", sa.BigInteger(), nullable=True),
        sa.Column("updated_position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "artifacts",
        sa.Column("artifact_hash", sa.String(length=64), nullable=False),
        sa.Column("blueprint_id", sa.String(length=32), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("strategy", sa.String(length=32), nullable=True),
        sa.Column("slot_shape", sa.Text(), nullable=True),
        sa.Column("job_id", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("stored_position", sa.BigInteger(), nullable=True),
        sa.Column("updated_position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("artifact_hash"),
    )
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.create_index("ix_artifacts_blueprint", ["blueprint_id"], unique=False)

    op.create_table(
        "blueprints",
        sa.Column("blueprint_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=True),
        sa.Column("tier", sa.String(length=16), nullable=True),
        sa.Column("risk", sa.Float(), nullable=True),
        sa.Column("curriculum_stage", sa.Integer(), nullable=True),
        sa.Column("slot_kinds", sa.Text(), nullable=True),
        sa.Column("parameter_ranges_json", sa.Text(), nullable=True),
        sa.Column("requires_approval", sa.Boolean(), nullable=True),
        sa.Column("approved", sa.Boolean(), nullable=True),
        sa.Column("quarantine_only", sa.Boolean(), nullable=True),
        sa.Column("conservative_pool", sa.Boolean(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("registered_position", sa.BigInteger(), nullable=True),
        sa.Column("compile_status", sa.String(length=16), nullable=True),
        sa.Column("last_job_id", sa.String(length=128), nullable=True),
        sa.Column("artifact_hash", sa.String(length=64), nullable=True),
        sa.Column("updated_position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("blueprint_id"),
    )
    op.create_table(
        "commands",
        sa.Column("command_id", sa.String(length=128), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=128), nullable=True),
        sa.Column("epoch", sa.Integer(), nullable=True),
        sa.Column("command_type", sa.String(length=32), nullable=True),
        sa.Column("operation", sa.String(length=32), nullable=True),
        sa.Column("target_slot", sa.Integer(), nullable=True),
        sa.Column("target_seed_id", sa.Integer(), nullable=True),
        sa.Column("blueprint_id", sa.String(length=32), nullable=True),
        sa.Column("policy_version", sa.String(length=64), nullable=True),
        sa.Column("issued_by", sa.String(length=64), nullable=True),
        sa.Column("decision_event_id", sa.String(length=64), nullable=True),
        sa.Column("issued_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("command_json", sa.Text(), nullable=True),
        sa.Column("superseded_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("command_id"),
    )
    with op.batch_alter_table("commands", schema=None) as batch_op:
        batch_op.create_index("ix_commands_blueprint", ["blueprint_id"], unique=False)
        batch_op.create_index("ix_commands_run", ["run_id", "epoch"], unique=False)

    op.create_table(
        "compile_events",
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("job_id", sa.String(length=128), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("will_retry", sa.Boolean(), nullable=True),
        sa.Column("artifact_hash", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("position"),
    )
    with op.batch_alter_table("compile_events", schema=None) as batch_op:
        batch_op.create_index("ix_compile_events_job", ["job_id", "position"], unique=False)

    op.create_table(
        "compile_jobs",
        sa.Column("job_id", sa.String(length=128), nullable=False),
        sa.Column("blueprint_id", sa.String(length=32), nullable=True),
        sa.Column("strategy", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=True),
        sa.Column("parameters_json", sa.Text(), nullable=True),
        sa.Column("slot_shape", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("artifact_hash", sa.String(length=64), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("queued_position", sa.BigInteger(), nullable=True),
        sa.Column("updated_position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("job_id"),
    )
    with op.batch_alter_table("compile_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_compile_jobs_blueprint", ["blueprint_id"], unique=False)

    op.create_table(
        "decisions",
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=128), nullable=True),
        sa.Column("epoch", sa.Integer(), nullable=True),
        sa.Column("policy_name", sa.String(length=64), nullable=True),
        sa.Column("policy_version", sa.String(length=64), nullable=True),
        sa.Column("risk_level", sa.String(length=16), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("command_id", sa.String(length=128), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=True),
        sa.Column("conservative", sa.Boolean(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("packet_id", sa.String(length=16), nullable=True),
        sa.Column("inputs_json", sa.Text(), nullable=True),
        sa.Column("superseded_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("position"),
    )
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.create_index("ix_decisions_command", ["command_id"], unique=False)
        batch_op.create_index("ix_decisions_run", ["run_id", "epoch"], unique=False)

    op.create_table(
        "field_reports",
        sa.Column("report_id", sa.String(length=128), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("command_id", sa.String(length=128), nullable=True),
        sa.Column("run_id", sa.String(length=128), nullable=True),
        sa.Column("seed_id", sa.Integer(), nullable=True),
        sa.Column("slot", sa.Integer(), nullable=True),
        sa.Column("blueprint_id", sa.String(length=32), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("delta_accuracy", sa.Float(), nullable=True),
        sa.Column("delta_loss", sa.Float(), nullable=True),
        sa.Column("delta_parameters", sa.BigInteger(), nullable=True),
        sa.Column("policy_version", sa.String(length=64), nullable=True),
        sa.Column("risk_at_decision", sa.String(length=16), nullable=True),
        sa.Column("start_epoch", sa.Integer(), nullable=True),
        sa.Column("end_epoch", sa.Integer(), nullable=True),
        sa.Column("metrics_json", sa.Text(), nullable=True),
        sa.Column("occurred_at_ns", sa.BigInteger(), nullable=False),
        sa.Column("superseded_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("report_id"),
    )
    with op.batch_alter_table("field_reports", schema=None) as batch_op:
        batch_op.create_index("ix_field_reports_command", ["command_id"], unique=False)
        batch_op.create_index("ix_field_reports_seed", ["run_id", "slot"], unique=False)
        batch_op.create_index("ix_field_reports_time", ["occurred_at_ns"], unique=False)

    op.create_table(
        "policies",
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("policy_name", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("parent_version", sa.String(length=64), nullable=True),
        sa.Column("artifact_path", sa.Text(), nullable=True),
        sa.Column("lora", sa.Boolean(), nullable=True),
        sa.Column("training_metrics_json", sa.Text(), nullable=True),
        sa.Column("steps", sa.BigInteger(), nullable=True),
        sa.Column("experiences", sa.Integer(), nullable=True),
        sa.Column("validation_passed", sa.Boolean(), nullable=True),
        sa.Column("validation_checks_json", sa.Text(), nullable=True),
        sa.Column("validation_reason", sa.Text(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )
    op.create_table(
        "policy_events",
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("detail_json", sa.Text(), nullable=True),
        sa.Column("epoch", sa.Integer(), nullable=True),
        sa.Column("run_id", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("position"),
    )
    with op.batch_alter_table("policy_events", schema=None) as batch_op:
        batch_op.create_index("ix_policy_events_version", ["version", "position"], unique=False)

    op.create_table(
        "projection_checkpoints",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "run_checkpoints",
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("components", sa.Text(), nullable=True),
        sa.Column("log_position", sa.BigInteger(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("superseded_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("position"),
    )
    with op.batch_alter_table("run_checkpoints", schema=None) as batch_op:
        batch_op.create_index("ix_run_checkpoints_run", ["run_id", "epoch"], unique=False)

    op.create_table(
        "run_epochs",
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("packet_id", sa.String(length=16), nullable=False),
        sa.Column("global_step", sa.BigInteger(), nullable=True),
        sa.Column("training_loss", sa.Float(), nullable=True),
        sa.Column("training_accuracy", sa.Float(), nullable=True),
        sa.Column("validation_loss", sa.Float(), nullable=True),
        sa.Column("validation_accuracy", sa.Float(), nullable=True),
        sa.Column("test_accuracy", sa.Float(), nullable=True),
        sa.Column("epoch_wall_ms", sa.Float(), nullable=True),
        sa.Column("parameters", sa.BigInteger(), nullable=True),
        sa.Column("metrics_json", sa.Text(), nullable=True),
        sa.Column("seeds_json", sa.Text(), nullable=True),
        sa.Column("occurred_at_ns", sa.BigInteger(), nullable=True),
        sa.Column("superseded_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("position"),
    )
    with op.batch_alter_table("run_epochs", schema=None) as batch_op:
        batch_op.create_index("ix_run_epochs_run_epoch", ["run_id", "epoch"], unique=False)

    op.create_table(
        "run_hooks",
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("overrun", sa.Boolean(), nullable=False),
        sa.Column("assembly_ms", sa.Float(), nullable=True),
        sa.Column("controller_ms", sa.Float(), nullable=True),
        sa.Column("command_ms", sa.Float(), nullable=True),
        sa.Column("guard_ms", sa.Float(), nullable=True),
        sa.Column("total_ms", sa.Float(), nullable=True),
        sa.Column("budget_ms", sa.Float(), nullable=True),
        sa.Column("superseded_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("position"),
    )
    with op.batch_alter_table("run_hooks", schema=None) as batch_op:
        batch_op.create_index("ix_run_hooks_run", ["run_id", "epoch"], unique=False)

    op.create_table(
        "run_rollbacks",
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("target_epoch", sa.Integer(), nullable=True),
        sa.Column("target_position", sa.BigInteger(), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.String(length=128), nullable=True),
        sa.Column("checkpoint_hash", sa.String(length=64), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("superseded_from", sa.BigInteger(), nullable=True),
        sa.Column("superseded_to", sa.BigInteger(), nullable=True),
        sa.Column("superseded_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("position"),
    )
    with op.batch_alter_table("run_rollbacks", schema=None) as batch_op:
        batch_op.create_index("ix_run_rollbacks_run", ["run_id"], unique=False)

    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("config_json", sa.Text(), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("host_model", sa.String(length=128), nullable=True),
        sa.Column("dataset", sa.String(length=128), nullable=True),
        sa.Column("code_version", sa.String(length=128), nullable=True),
        sa.Column("device", sa.String(length=32), nullable=True),
        sa.Column("resumed", sa.Boolean(), nullable=True),
        sa.Column("started_position", sa.BigInteger(), nullable=True),
        sa.Column("started_at_ns", sa.BigInteger(), nullable=True),
        sa.Column("last_epoch", sa.Integer(), nullable=True),
        sa.Column("last_position", sa.BigInteger(), nullable=False),
        sa.Column("ended_position", sa.BigInteger(), nullable=True),
        sa.Column("epochs", sa.Integer(), nullable=True),
        sa.Column("test_accuracy", sa.Float(), nullable=True),
        sa.Column("parameters", sa.BigInteger(), nullable=True),
        sa.Column("model_sha256", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("rollbacks", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_table(
        "seed_events",
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("stream", sa.String(length=160), nullable=False),
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("seed_id", sa.Integer(), nullable=True),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("from_stage", sa.String(length=16), nullable=True),
        sa.Column("to_stage", sa.String(length=16), nullable=True),
        sa.Column("gates_json", sa.Text(), nullable=True),
        sa.Column("command_id", sa.String(length=128), nullable=True),
        sa.Column("correlation_id", sa.String(length=128), nullable=True),
        sa.Column("causation_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("epoch", sa.Integer(), nullable=True),
        sa.Column("blueprint_id", sa.String(length=32), nullable=True),
        sa.Column("artifact_hash", sa.String(length=64), nullable=True),
        sa.Column("violations", sa.Integer(), nullable=True),
        sa.Column("detail_json", sa.Text(), nullable=True),
        sa.Column("superseded_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("position"),
    )
    with op.batch_alter_table("seed_events", schema=None) as batch_op:
        batch_op.create_index("ix_seed_events_blueprint", ["blueprint_id"], unique=False)
        batch_op.create_index("ix_seed_events_command", ["command_id"], unique=False)
        batch_op.create_index("ix_seed_events_correlation", ["correlation_id"], unique=False)
        batch_op.create_index("ix_seed_events_stream", ["stream", "position"], unique=False)

    op.create_table(
        "seeds",
        sa.Column("stream", sa.String(length=160), nullable=False),
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("seed_id", sa.Integer(), nullable=True),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("blueprint_id", sa.String(length=32), nullable=True),
        sa.Column("artifact_hash", sa.String(length=64), nullable=True),
        sa.Column("command_id", sa.String(length=128), nullable=True),
        sa.Column("epoch", sa.Integer(), nullable=True),
        sa.Column("violations", sa.Integer(), nullable=False),
        sa.Column("last_position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("stream"),
    )
    with op.batch_alter_table("seeds", schema=None) as batch_op:
        batch_op.create_index("ix_seeds_run", ["run_id", "slot"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("seeds", schema=None) as batch_op:
        batch_op.drop_index("ix_seeds_run")

    op.drop_table("seeds")
    with op.batch_alter_table("seed_events", schema=None) as batch_op:
        batch_op.drop_index("ix_seed_events_stream")
        batch_op.drop_index("ix_seed_events_correlation")
        batch_op.drop_index("ix_seed_events_command")
        batch_op.drop_index("ix_seed_events_blueprint")

    op.drop_table("seed_events")
    op.drop_table("runs")
    with op.batch_alter_table("run_rollbacks", schema=None) as batch_op:
        batch_op.drop_index("ix_run_rollbacks_run")

    op.drop_table("run_rollbacks")
    with op.batch_alter_table("run_hooks", schema=None) as batch_op:
        batch_op.drop_index("ix_run_hooks_run")

    op.drop_table("run_hooks")
    with op.batch_alter_table("run_epochs", schema=None) as batch_op:
        batch_op.drop_index("ix_run_epochs_run_epoch")

    op.drop_table("run_epochs")
    with op.batch_alter_table("run_checkpoints", schema=None) as batch_op:
        batch_op.drop_index("ix_run_checkpoints_run")

    op.drop_table("run_checkpoints")
    op.drop_table("projection_checkpoints")
    with op.batch_alter_table("policy_events", schema=None) as batch_op:
        batch_op.drop_index("ix_policy_events_version")

    op.drop_table("policy_events")
    op.drop_table("policies")
    with op.batch_alter_table("field_reports", schema=None) as batch_op:
        batch_op.drop_index("ix_field_reports_time")
        batch_op.drop_index("ix_field_reports_seed")
        batch_op.drop_index("ix_field_reports_command")

    op.drop_table("field_reports")
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index("ix_decisions_run")
        batch_op.drop_index("ix_decisions_command")

    op.drop_table("decisions")
    with op.batch_alter_table("compile_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_compile_jobs_blueprint")

    op.drop_table("compile_jobs")
    with op.batch_alter_table("compile_events", schema=None) as batch_op:
        batch_op.drop_index("ix_compile_events_job")

    op.drop_table("compile_events")
    with op.batch_alter_table("commands", schema=None) as batch_op:
        batch_op.drop_index("ix_commands_run")
        batch_op.drop_index("ix_commands_blueprint")

    op.drop_table("commands")
    op.drop_table("blueprints")
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_index("ix_artifacts_blueprint")

    op.drop_table("artifacts")
    op.drop_table("alerts")
    with op.batch_alter_table("alert_events", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_events_name")

    op.drop_table("alert_events")
