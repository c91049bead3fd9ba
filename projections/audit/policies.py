"""Audit of a policy version: its status, history, and the decisions and outcomes under it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from projections import schema
from projections.audit.common import (
    AuditError,
    NotFound,
    decode_json,
    fetch_rows,
    outcome_counts,
    standing_at,
    until_at,
)


def audit_policy(
    engine: Engine, version: str, as_of: int | None = None, epoch: int | None = None
) -> dict[str, Any]:
    if epoch is not None:
        raise AuditError("--epoch needs a run to count epochs in; use --as-of POSITION for a policy")
    p, pe, d = schema.policies, schema.policy_events, schema.decisions
    with engine.connect() as connection:
        row = connection.execute(select(p).where(p.c.version == version)).first()
        decisions = connection.execute(
            select(func.count()).select_from(d).where(d.c.policy_version == version, standing_at(d, as_of))
        ).scalar()
        if row is None and not decisions:
            raise NotFound(f"no policy version {version!r}")
        policy = (
            decode_json([dict(row._mapping)], "training_metrics_json", "validation_checks_json")[0]
            if row
            else None
        )
        events = decode_json(
            fetch_rows(
                connection,
                select(pe)
                .where(pe.c.version == version, until_at(pe.c.position, as_of))
                .order_by(pe.c.position),
            ),
            "detail_json",
        )
        outcomes = outcome_counts(connection, schema.field_reports.c.policy_version == version, as_of)
    return {
        "policy": policy,
        "version": version,
        "as_of": as_of,
        "events": events,
        "decisions": decisions,
        "field_report_outcomes": outcomes,
    }
