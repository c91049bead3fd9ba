"""Audit of a blueprint: the catalogue row, compile jobs, artifacts, where it was grafted, how its seeds
ended (fossilized, culled, terminated, with the reason) and its field reports."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import Engine, func, select

from projections import schema
from projections.audit.common import (
    AuditError,
    NotFound,
    decode_json,
    fetch_rows,
    mark_superseded,
    outcome_counts,
    read_history,
    until_at,
    visible_at,
)

LIFECYCLE_ENDINGS = ("FOSSILIZED", "CULLED", "TERMINATED")


def audit_blueprint(
    engine: Engine, blueprint_id: str, as_of: int | None = None, epoch: int | None = None
) -> dict[str, Any]:
    if epoch is not None:
        raise AuditError("--epoch needs a run to count epochs in; use --as-of POSITION for a blueprint")
    b, j, ce, a = schema.blueprints, schema.compile_jobs, schema.compile_events, schema.artifacts
    s, c = schema.seed_events, schema.commands
    with engine.connect() as connection:
        row = connection.execute(select(b).where(b.c.blueprint_id == blueprint_id)).first()
        if row is None:
            raise NotFound(f"no blueprint {blueprint_id!r} (ids look like BP001)")
        blueprint = decode_json([dict(row._mapping)], "parameter_ranges_json")[0]
        jobs = decode_json(
            fetch_rows(
                connection,
                select(j)
                .where(j.c.blueprint_id == blueprint_id, until_at(j.c.queued_position, as_of))
                .order_by(j.c.queued_position),
            ),
            "parameters_json",
        )
        for job in jobs:
            job["events"] = fetch_rows(
                connection,
                select(ce)
                .where(ce.c.job_id == job["job_id"], until_at(ce.c.position, as_of))
                .order_by(ce.c.position),
            )
        artifacts = fetch_rows(
            connection,
            select(a)
            .where(a.c.blueprint_id == blueprint_id, until_at(a.c.stored_position, as_of))
            .order_by(a.c.stored_position),
        )
        grafts = mark_superseded(
            fetch_rows(
                connection,
                select(
                    s.c.position,
                    s.c.stream,
                    s.c.run_id,
                    s.c.slot,
                    s.c.seed_id,
                    s.c.command_id,
                    s.c.superseded_at,
                )
                .where(
                    s.c.blueprint_id == blueprint_id, s.c.event_type == "SeedGrafted", visible_at(s, as_of)
                )
                .order_by(s.c.position),
            ),
            as_of,
        )
        endings = mark_superseded(
            fetch_rows(
                connection,
                select(
                    s.c.position,
                    s.c.stream,
                    s.c.run_id,
                    s.c.slot,
                    s.c.seed_id,
                    s.c.epoch,
                    s.c.to_stage,
                    s.c.reason,
                    s.c.superseded_at,
                )
                .where(
                    s.c.blueprint_id == blueprint_id,
                    s.c.event_type == "SeedTransitioned",
                    s.c.to_stage.in_(LIFECYCLE_ENDINGS),
                    visible_at(s, as_of),
                )
                .order_by(s.c.position),
            ),
            as_of,
        )
        f = schema.field_reports
        reports = decode_json(
            read_history(connection, f, f.c.blueprint_id == blueprint_id, as_of), "metrics_json"
        )
        commands = connection.execute(
            select(func.count()).select_from(c).where(c.c.blueprint_id == blueprint_id, visible_at(c, as_of))
        ).scalar()
        outcomes = outcome_counts(connection, schema.field_reports.c.blueprint_id == blueprint_id, as_of)
    return {
        "blueprint": blueprint,
        "as_of": as_of,
        "compile_jobs": jobs,
        "artifacts": artifacts,
        "grafts": grafts,
        "commands": commands,
        "lifecycle_endings": endings,
        "lifecycle_outcomes": lifecycle_outcomes(endings),
        "field_report_outcomes": outcomes,
        "field_reports": reports,
    }


def lifecycle_outcomes(endings: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Standing endings by stage, each counted by cause: the reason up to its first colon ("G4 failed",
    "run ended", a controller's cull)."""
    counts: dict[str, Counter[str]] = {}
    for row in endings:
        if not row["superseded"]:
            cause = (row["reason"] or "").split(":")[0].strip() or "-"
            counts.setdefault(row["to_stage"], Counter())[cause] += 1
    return {stage: dict(sorted(causes.items())) for stage, causes in sorted(counts.items())}
