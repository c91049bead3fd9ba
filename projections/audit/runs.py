"""Audit of a run: epochs, hooks, checkpoints, rollbacks, the commands it rejected and its seeds."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from projections import schema
from projections.audit.common import (
    NotFound,
    decode_packets,
    fetch_rows,
    mark_superseded,
    read_history,
    resolve_as_of,
    standing_at,
    until_at,
)
from projections.audit.seeds import seed_state_of

REJECTED = "CommandRejected"


def rejected_commands(
    connection: Connection, run_id: str, rollbacks: list[dict[str, Any]], as_of: int | None
) -> list[dict[str, Any]]:
    """Every CommandRejected of the run in log order: a seed's (seed_events) and the others (kept with
    the rollbacks), each with its epoch and slot where it has them, its command, code and reason."""
    s = schema.seed_events
    seed_rows = read_history(connection, s, (s.c.run_id == run_id) & (s.c.event_type == REJECTED), as_of)
    rejected = [
        {
            "position": row["position"],
            "epoch": row["epoch"],
            "slot": row["slot"],
            "command_id": row["command_id"],
            "code": json.loads(row["detail_json"] or "{}").get("code", ""),
            "reason": row["reason"],
            "superseded": row["superseded"],
            "superseded_at": row["superseded_at"],
        }
        for row in seed_rows
    ]
    for row in mark_superseded([dict(row) for row in rollbacks], as_of):
        if row["event_type"] == REJECTED:
            code, _, reason = (row["reason"] or "").partition(": ")
            rejected.append(
                {
                    "position": row["position"],
                    "epoch": None,
                    "slot": None,
                    "command_id": None,
                    "code": code,
                    "reason": reason,
                    "superseded": row["superseded"],
                    "superseded_at": row["superseded_at"],
                }
            )
    return sorted(rejected, key=lambda row: row["position"])


def audit_run(
    engine: Engine, run_id: str, as_of: int | None = None, epoch: int | None = None
) -> dict[str, Any]:
    r, e, k, b, h = (
        schema.runs,
        schema.run_epochs,
        schema.run_checkpoints,
        schema.run_rollbacks,
        schema.run_hooks,
    )
    with engine.connect() as connection:
        run = connection.execute(select(r).where(r.c.run_id == run_id)).first()
        if run is None:
            raise NotFound(f"no run {run_id!r}")
        as_of = resolve_as_of(connection, run_id, as_of, epoch)
        summary = dict(run._mapping)
        epochs = decode_packets(read_history(connection, e, e.c.run_id == run_id, as_of))
        checkpoints = read_history(connection, k, k.c.run_id == run_id, as_of)
        rollbacks = fetch_rows(
            connection,
            select(b).where(b.c.run_id == run_id, until_at(b.c.position, as_of)).order_by(b.c.position),
        )
        rejected = rejected_commands(connection, run_id, rollbacks, as_of)
        overruns = connection.execute(
            select(func.count())
            .select_from(h)
            .where(h.c.run_id == run_id, h.c.overrun.is_(True), standing_at(h, as_of))
        ).scalar()
        streams = [
            row[0]
            for row in connection.execute(
                select(schema.seeds.c.stream)
                .where(schema.seeds.c.run_id == run_id)
                .order_by(schema.seeds.c.slot)
            )
        ]
        s = schema.seed_events
        seeds = []
        for stream in streams:
            history = read_history(connection, s, s.c.stream == stream, as_of)
            if any(not event["superseded"] for event in history):
                seeds.append({"seed": stream.removeprefix("seed-"), **seed_state_of(history)})
    standing = [epoch for epoch in epochs if not epoch["superseded"]]
    if as_of is not None:
        summary["last_epoch"] = standing[-1]["epoch"] if standing else None
        if summary["ended_position"] is not None and summary["ended_position"] > as_of:
            summary.update(status="running", ended_position=None)
    return {
        "run": summary,
        "as_of": as_of,
        "epochs": epochs,
        "checkpoints": checkpoints,
        "rollbacks": [row for row in rollbacks if row["event_type"] != REJECTED],
        "rejected": rejected,
        "hook_overruns": overruns,
        "seeds": seeds,
    }
