"""The field reports read model: how each applied command turned out, kept for a retention window."""

from __future__ import annotations

from google.protobuf.message import Message

from leyline import pb
from projections import schema
from projections.projectors.base import (
    OUTCOMES,
    RISK_LEVELS,
    STAGES,
    Change,
    Options,
    Projection,
    Statement,
    as_json,
    or_none,
    run_of,
    supersede_params,
    supersede_statement,
    upsert_statement,
)

FIELD_REPORT_COLUMNS = tuple(schema.field_reports.columns.keys())
UPSERT_FIELD_REPORT = upsert_statement(
    schema.field_reports,
    "upsert_field_report",
    ("report_id",),
    FIELD_REPORT_COLUMNS,
    ", ".join(f"{column} = excluded.{column}" for column in FIELD_REPORT_COLUMNS[1:]),
)
FIELD_REPORT_SUPERSEDE = supersede_statement(schema.field_reports)
# Retention runs on the log's clock (the newest report's time), so incremental application and a rebuild
# prune the same rows; the log keeps every report.
FIELD_REPORT_RETENTION = Statement(
    "field_report_retention",
    "DELETE FROM {field_reports} WHERE occurred_at_ns < "
    "(SELECT MAX(occurred_at_ns) FROM {field_reports}) - :retention_ns",
    ("field_reports",),
)


def project(envelope: pb.EventEnvelope, payload: Message) -> list[Change]:
    if isinstance(payload, pb.FieldReportIssued):
        report = payload.report
        row = {
            "report_id": report.report_id or envelope.event_id,
            "position": envelope.global_position,
            "command_id": or_none(report.command_id),
            "run_id": report.run_id or run_of(envelope) or None,
            "seed_id": report.seed_id,
            "slot": report.slot,
            "blueprint_id": or_none(report.blueprint_id),
            "outcome": OUTCOMES.get(report.outcome),
            "delta_accuracy": report.delta_accuracy,
            "delta_loss": report.delta_loss,
            "delta_parameters": report.delta_parameters,
            "policy_version": report.policy_version,
            "risk_at_decision": RISK_LEVELS.get(report.risk_at_decision),
            "start_epoch": report.start_epoch,
            "end_epoch": report.end_epoch,
            "metrics_json": as_json(report.metrics),
            "occurred_at_ns": envelope.occurred_at_ns,
            "superseded_at": None,
            "seed_stage": STAGES.get(report.seed_stage) if report.seed_stage else None,
            "seed_reason": or_none(report.seed_reason),
        }
        return [(UPSERT_FIELD_REPORT, row)]
    if isinstance(payload, pb.RollbackCompleted):
        return [(FIELD_REPORT_SUPERSEDE, supersede_params(envelope, payload))]
    return []


EVENT_TYPES = frozenset({"FieldReportIssued", "RollbackCompleted"})


def projection(options: Options) -> Projection:
    retention = {"retention_ns": int(options.field_report_retention_s * 1e9)}

    def prune() -> list[Change]:
        return [(FIELD_REPORT_RETENTION, retention)]

    return Projection("field_reports", 2, (schema.field_reports,), EVENT_TYPES, project, prune)
