"""Audit of a run: epochs, hooks, checkpoints, rollbacks and its seeds."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from projections import schema
from projections.audit.common import (
    NotFound,
    decode_packets,
    fetch_rows,
    read_history,
    resolve_as_of,
    standing_at,
    until_at,
)
from projections.audit.seeds import seed_state_of


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
        "rollbacks": rollbacks,
        "hook_overruns": overruns,
        "seeds": seeds,
    }
