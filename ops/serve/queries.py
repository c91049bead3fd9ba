"""The JSON API's reads of the projection database (projections/schema.py, projections.audit).

Every function takes an engine and returns JSON-ready dicts. Rows superseded by a rollback are kept and
flagged (`superseded`), so a page can draw what a rollback voided; standing rows have `superseded` false.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, and_, func, select

from projections import schema
from projections.audit import NotFound, audit_command, audit_seed

MARKER_STAGES = {"CULLED": "cull", "FOSSILIZED": "fossilize"}
ALERT_HISTORY = 200


def _flagged(row: dict[str, Any]) -> dict[str, Any]:
    row["superseded"] = row.get("superseded_at") is not None
    return row


def _json_columns(row: dict[str, Any], *columns: str) -> dict[str, Any]:
    for column in columns:
        value = row.pop(column, None)
        row[column.removesuffix("_json")] = json.loads(value) if value else None
    return row


def runs(engine: Engine) -> list[dict[str, Any]]:
    """Every run with its best standing values, newest first."""
    r, e = schema.runs, schema.run_epochs
    best = (
        select(
            e.c.run_id,
            func.min(e.c.validation_loss).label("best_validation_loss"),
            func.max(e.c.validation_accuracy).label("best_validation_accuracy"),
        )
        .where(e.c.superseded_at.is_(None))
        .group_by(e.c.run_id)
        .subquery()
    )
    query = (
        select(
            r.c.run_id,
            r.c.status,
            r.c.host_model,
            r.c.dataset,
            r.c.device,
            r.c.started_at_ns,
            r.c.last_epoch,
            r.c.epochs,
            r.c.test_accuracy,
            r.c.parameters,
            r.c.rollbacks,
            r.c.error,
            r.c.last_position,
            best.c.best_validation_loss,
            best.c.best_validation_accuracy,
        )
        .select_from(r.outerjoin(best, best.c.run_id == r.c.run_id))
        .order_by(r.c.started_position.desc(), r.c.run_id)
    )
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def _run_row(connection: Any, run_id: str) -> dict[str, Any]:
    row = connection.execute(select(schema.runs).where(schema.runs.c.run_id == run_id)).first()
    if row is None:
        raise NotFound(f"no run {run_id!r}")
    summary = dict(row._mapping)
    summary["config"] = json.loads(summary.pop("config_json") or "null")
    return summary


def run(engine: Engine, run_id: str) -> dict[str, Any]:
    """A run: its epochs (with the hook's time), markers at grafts, culls, fossilizations and rollbacks,
    and its checkpoints."""
    e, h, k, b, s = (
        schema.run_epochs,
        schema.run_hooks,
        schema.run_checkpoints,
        schema.run_rollbacks,
        schema.seed_events,
    )
    with engine.connect() as connection:
        summary = _run_row(connection, run_id)
        hooks = {
            (row.epoch, row.superseded_at): row.total_ms
            for row in connection.execute(
                select(h.c.epoch, h.c.superseded_at, h.c.total_ms).where(h.c.run_id == run_id)
            )
        }
        epochs = []
        for row in connection.execute(select(e).where(e.c.run_id == run_id).order_by(e.c.position)):
            epoch = dict(row._mapping)
            epoch.pop("packet", None)
            epoch["hook_ms"] = hooks.get((epoch["epoch"], epoch["superseded_at"]))
            epochs.append(_flagged(epoch))
        checkpoints = [
            _flagged(dict(row._mapping))
            for row in connection.execute(select(k).where(k.c.run_id == run_id).order_by(k.c.position))
        ]
        seed_rows = connection.execute(
            select(s)
            .where(
                s.c.run_id == run_id,
                (s.c.event_type == "SeedGrafted") | s.c.to_stage.in_(tuple(MARKER_STAGES)),
            )
            .order_by(s.c.position)
        )
        markers = [
            {
                "kind": "graft" if row.event_type == "SeedGrafted" else MARKER_STAGES[row.to_stage],
                "position": row.position,
                "epoch": row.epoch,
                "slot": row.slot,
                "seed": f"{run_id}.{row.slot}",
                "blueprint_id": row.blueprint_id,
                "reason": row.reason,
                "superseded": row.superseded_at is not None,
            }
            for row in seed_rows
        ]
        request = None  # the RollbackRequested a RollbackCompleted answers carries its reason
        for row in connection.execute(select(b).where(b.c.run_id == run_id).order_by(b.c.position)):
            if row.event_type == "RollbackRequested":
                request = row
                continue
            if row.event_type != "RollbackCompleted":
                continue
            answered = request is not None and request.target_epoch == row.target_epoch
            asked = request.reason if answered and request is not None else None
            markers.append(
                {
                    "kind": "rollback",
                    "position": row.position,
                    "epoch": row.target_epoch,
                    "slot": None,
                    "seed": None,
                    "blueprint_id": None,
                    "reason": row.reason or asked,
                    "mode": row.mode,
                    "superseded": row.superseded_at is not None,
                }
            )
            request = None
    markers.sort(key=lambda marker: marker["position"])
    return {"run": summary, "epochs": epochs, "markers": markers, "checkpoints": checkpoints}


def seeds(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    """The run's seeds (one per slot used), each with its transitions and their gate results."""
    s, se = schema.seeds, schema.seed_events
    with engine.connect() as connection:
        _run_row(connection, run_id)
        result = [
            dict(row._mapping)
            for row in connection.execute(select(s).where(s.c.run_id == run_id).order_by(s.c.slot))
        ]
        events: dict[str, list[dict[str, Any]]] = {seed["stream"]: [] for seed in result}
        for row in connection.execute(select(se).where(se.c.run_id == run_id).order_by(se.c.position)):
            event = _json_columns(dict(row._mapping), "gates_json", "detail_json")
            events.setdefault(event["stream"], []).append(_flagged(event))
    for seed in result:
        seed["seed"] = seed["stream"].removeprefix("seed-")
        seed["transitions"] = events.get(seed["stream"], [])
    return result


def decisions(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    d, c = schema.decisions, schema.commands
    query = (
        select(d, c.c.operation, c.c.target_slot, c.c.blueprint_id)
        .select_from(d.outerjoin(c, c.c.command_id == d.c.command_id))
        .where(d.c.run_id == run_id)
        .order_by(d.c.position)
    )
    with engine.connect() as connection:
        _run_row(connection, run_id)
        return [
            _flagged(_json_columns(dict(row._mapping), "inputs_json")) for row in connection.execute(query)
        ]


def field_reports(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    f = schema.field_reports
    with engine.connect() as connection:
        _run_row(connection, run_id)
        rows = connection.execute(select(f).where(f.c.run_id == run_id).order_by(f.c.position))
        return [_flagged(_json_columns(dict(row._mapping), "metrics_json")) for row in rows]


def alerts(engine: Engine) -> dict[str, Any]:
    """Every alert's current state (firing first) and the latest fired/resolved events."""
    a, ae = schema.alerts, schema.alert_events
    with engine.connect() as connection:
        current = [
            _json_columns(dict(row._mapping), "labels_json")
            for row in connection.execute(select(a).order_by(a.c.state, a.c.updated_position.desc()))
        ]
        history = [
            dict(row._mapping)
            for row in connection.execute(select(ae).order_by(ae.c.position.desc()).limit(ALERT_HISTORY))
        ]
    firing = [alert for alert in current if alert["state"] == "firing"]
    return {
        "firing": len(firing),
        "alerts": firing + [a for a in current if a["state"] != "firing"],
        "events": history,
    }


def chain(engine: Engine, seed: str) -> dict[str, Any]:
    """A seed's causal chain: for each command behind it, packet → decision → command → transitions →
    field report (projections.audit's command audit), and the transitions no command caused."""
    audit = audit_seed(engine, seed)
    command_ids = list(
        dict.fromkeys(event["command_id"] for event in audit["history"] if event["command_id"])
    )
    links = [audit_command(engine, command_id) for command_id in command_ids]
    caused = {effect["position"] for link in links for effect in link["effects"]}
    return {
        "seed": audit["seed"],
        "run_id": audit["run_id"],
        "slot": audit["slot"],
        "state": audit["state"],
        "links": links,
        "other_transitions": [event for event in audit["history"] if event["position"] not in caused],
    }


def counts(engine: Engine) -> dict[str, Any]:
    """Runs by status, standing seeds by stage, alerts firing, and each projection's checkpoint."""
    r, s, a = schema.runs, schema.seeds, schema.alerts
    p = schema.projection_checkpoints
    with engine.connect() as connection:
        by_status: dict[str, int] = dict(
            connection.execute(select(r.c.status, func.count()).group_by(r.c.status)).all()
        )
        by_stage: dict[str, int] = dict(
            connection.execute(select(s.c.stage, func.count()).group_by(s.c.stage)).all()
        )
        firing = connection.execute(
            select(func.count()).select_from(a).where(and_(a.c.state == "firing"))
        ).scalar()
        checkpoints: dict[str, int] = dict(connection.execute(select(p.c.name, p.c.position)).all())
    return {
        "runs": by_status,
        "seeds": by_stage,
        "alerts_firing": int(firing or 0),
        "checkpoints": checkpoints,
    }
