"""Audit queries: "what happened, and why" for a seed, run, command, blueprint or policy (SPEC §6).

Each query returns a JSON-ready dict. Without `as_of` it shows everything the read models hold, with rows
superseded by a rollback marked (`superseded_at`); with `as_of=P` it shows the state as the log stood at
position P: rows after P are hidden and rows superseded only after P are shown as standing. `epoch=N`
means the position of that run's (standing) EpochCompleted for epoch N. For blueprints and policies the
catalogue row itself is the current one; their histories, uses and counts follow `as_of`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Table, and_, func, or_, select, true

from leyline import pb
from projections import schema
from projections.projectors import STAGES


class AuditError(Exception):
    """The question cannot be answered as asked (bad combination of options)."""


class NotFound(Exception):
    """No such seed, run, command, blueprint or policy in the read models."""


def _visible(table: Table, as_of: int | None) -> ColumnElement[bool]:
    if as_of is None:
        return true()
    superseded = table.c.superseded_at
    return and_(table.c.position <= as_of, or_(superseded.is_(None), superseded > as_of))


def _standing(table: Table, as_of: int | None) -> ColumnElement[bool]:
    """Rows that are part of the state (not superseded) as of the position, or now."""
    if as_of is None:
        return table.c.superseded_at.is_(None)
    return _visible(table, as_of)


def _until(column: Any, as_of: int | None) -> ColumnElement[bool]:
    return true() if as_of is None else column <= as_of


def _rows(connection: Connection, query: Any) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in connection.execute(query)]


def _mark(rows: list[dict[str, Any]], as_of: int | None) -> list[dict[str, Any]]:
    """Turn `superseded_at` into the `superseded` flag as seen from `as_of` (or now)."""
    for row in rows:
        at = row.get("superseded_at")
        row["superseded"] = at is not None and (as_of is None or at <= as_of)
        if as_of is not None and at is not None and at > as_of:
            row["superseded_at"] = None
    return rows


def _history(
    connection: Connection, table: Table, condition: ColumnElement[bool], as_of: int | None
) -> list[dict[str, Any]]:
    """The rows of `table` meeting `condition` visible as of `as_of`, in log order, marked."""
    query = select(table).where(condition, _visible(table, as_of)).order_by(table.c.position)
    return _mark(_rows(connection, query), as_of)


def _outcomes(
    connection: Connection, condition: ColumnElement[bool], as_of: int | None
) -> dict[str | None, int]:
    """Standing field reports meeting `condition`, counted by outcome."""
    f = schema.field_reports
    query = select(f.c.outcome, func.count()).where(condition, _standing(f, as_of)).group_by(f.c.outcome)
    return {outcome: count for outcome, count in connection.execute(query)}


def _decode(rows: list[dict[str, Any]], *columns: str) -> list[dict[str, Any]]:
    for row in rows:
        for column in columns:
            value = row.pop(column, None)
            row[column.removesuffix("_json")] = json.loads(value) if value else None
    return rows


def _packets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replace each epoch row's serialized SystemStatePacket by its metrics and seeds."""
    for row in rows:
        packet = pb.SystemStatePacket()
        packet.ParseFromString(row.pop("packet", None) or b"")
        row["metrics"] = dict(sorted(packet.metrics.items()))
        row["seeds"] = [
            {
                "slot": seed.slot,
                "seed_id": seed.seed_id,
                "stage": STAGES.get(seed.stage),
                "blueprint_id": seed.blueprint_id,
                "alpha": seed.alpha,
            }
            for seed in packet.seeds
        ]
    return rows


def epoch_position(connection: Connection, run_id: str, epoch: int) -> int:
    """The log position of a run's standing EpochCompleted for `epoch`."""
    e = schema.run_epochs
    position = connection.execute(
        select(func.max(e.c.position)).where(
            e.c.run_id == run_id, e.c.epoch == epoch, e.c.superseded_at.is_(None)
        )
    ).scalar()
    if position is None:
        raise NotFound(f"run {run_id!r} has no standing epoch {epoch}")
    return int(position)


def _as_of(connection: Connection, run_id: str | None, as_of: int | None, epoch: int | None) -> int | None:
    if epoch is None:
        return as_of
    if as_of is not None:
        raise AuditError("give --as-of or --epoch, not both")
    if run_id is None:
        raise AuditError("--epoch needs a run to count epochs in; use --as-of POSITION")
    return epoch_position(connection, run_id, epoch)


# ---------------------------------------------------------------- seeds


def seed_stream(seed: str) -> str:
    """Accept `seed-<run>.<slot>` or `<run>.<slot>`."""
    return seed if seed.startswith("seed-") else f"seed-{seed}"


def _seed_state(events: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A seed's state from its standing events, by the rules of the seed_lifecycle projector."""
    state: dict[str, Any] = {"stage": "DORMANT", "violations": 0}
    for event in events:
        if event["superseded"] or event["event_type"] == "CommandRejected":
            continue
        for column in ("blueprint_id", "artifact_hash", "command_id", "epoch", "seed_id"):
            if event.get(column) is not None:
                state[column] = event[column]
        if event["to_stage"] is not None:
            state["stage"] = event["to_stage"]
            if event["to_stage"] == "GERMINATED":
                state["violations"] = 0
        if event.get("violations") is not None:
            state["violations"] = event["violations"]
        state["last_position"] = event["position"]
    return state


def _commands(connection: Connection, command_ids: Iterable[str], as_of: int | None) -> list[dict[str, Any]]:
    ids = sorted(set(command_ids))
    if not ids:
        return []
    c, d = schema.commands, schema.decisions
    commands = _decode(_history(connection, c, c.c.command_id.in_(ids), as_of), "command_json")
    decisions = _decode(_history(connection, d, d.c.command_id.in_(ids), as_of), "inputs_json")
    by_command = {decision["command_id"]: decision for decision in decisions}
    for command in commands:
        command["decision"] = by_command.get(command["command_id"])
    return commands


def audit_seed(
    engine: Engine, seed: str, as_of: int | None = None, epoch: int | None = None
) -> dict[str, Any]:
    stream = seed_stream(seed)
    run_id, _, slot_text = stream.removeprefix("seed-").rpartition(".")
    e = schema.seed_events
    with engine.connect() as connection:
        exists = connection.execute(select(e.c.position).where(e.c.stream == stream).limit(1)).first()
        if exists is None:
            raise NotFound(f"no seed {stream.removeprefix('seed-')!r} (expected RUN.SLOT, e.g. r1.0)")
        as_of = _as_of(connection, run_id, as_of, epoch)
        history = _decode(_history(connection, e, e.c.stream == stream, as_of), "gates_json", "detail_json")
        state = _seed_state(history)
        commands = _commands(connection, (h["command_id"] for h in history if h["command_id"]), as_of)
        f = schema.field_reports
        reports = _history(connection, f, and_(f.c.run_id == run_id, f.c.slot == int(slot_text or 0)), as_of)
    return {
        "seed": stream.removeprefix("seed-"),
        "stream": stream,
        "run_id": run_id,
        "slot": int(slot_text or 0),
        "as_of": as_of,
        "state": state,
        "history": history,
        "commands": commands,
        "field_reports": _decode(reports, "metrics_json"),
    }


# ---------------------------------------------------------------- runs


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
        as_of = _as_of(connection, run_id, as_of, epoch)
        summary = dict(run._mapping)
        epochs = _packets(_history(connection, e, e.c.run_id == run_id, as_of))
        checkpoints = _history(connection, k, k.c.run_id == run_id, as_of)
        rollbacks = _rows(
            connection,
            select(b).where(b.c.run_id == run_id, _until(b.c.position, as_of)).order_by(b.c.position),
        )
        overruns = connection.execute(
            select(func.count())
            .select_from(h)
            .where(h.c.run_id == run_id, h.c.overrun.is_(True), _standing(h, as_of))
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
            history = _history(connection, s, s.c.stream == stream, as_of)
            if any(not event["superseded"] for event in history):
                seeds.append({"seed": stream.removeprefix("seed-"), **_seed_state(history)})
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


# ---------------------------------------------------------------- commands


def audit_command(
    engine: Engine, command_id: str, as_of: int | None = None, epoch: int | None = None
) -> dict[str, Any]:
    c, d, e, s, f = (
        schema.commands,
        schema.decisions,
        schema.run_epochs,
        schema.seed_events,
        schema.field_reports,
    )
    with engine.connect() as connection:
        row = connection.execute(select(c).where(c.c.command_id == command_id)).first()
        decision_row = connection.execute(select(d).where(d.c.command_id == command_id)).first()
        if row is None and decision_row is None:
            raise NotFound(f"no command {command_id!r}")
        run_id = (row or decision_row)._mapping["run_id"]  # type: ignore[union-attr]
        as_of = _as_of(connection, run_id, as_of, epoch)
        command = _decode(_mark([dict(row._mapping)], as_of), "command_json")[0] if row else None
        if command is not None and as_of is not None and command["position"] > as_of:
            command = None
        decision = None
        packet = None
        if decision_row is not None and (as_of is None or decision_row.position <= as_of):
            decision = _decode(_mark([dict(decision_row._mapping)], as_of), "inputs_json")[0]
            packet_row = connection.execute(
                select(e).where(e.c.run_id == decision["run_id"], e.c.packet_id == decision["packet_id"])
            ).first()
            if packet_row is not None:
                packet = _packets(_mark([dict(packet_row._mapping)], as_of))[0]
        effects = _decode(
            _history(
                connection, s, or_(s.c.command_id == command_id, s.c.correlation_id == command_id), as_of
            ),
            "gates_json",
            "detail_json",
        )
        reports = _history(connection, f, f.c.command_id == command_id, as_of)
    return {
        "command_id": command_id,
        "as_of": as_of,
        "state_packet": packet,
        "decision": decision,
        "command": command,
        "effects": effects,
        "field_reports": _decode(reports, "metrics_json"),
    }


# ---------------------------------------------------------------- blueprints


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
        blueprint = _decode([dict(row._mapping)], "parameter_ranges_json")[0]
        jobs = _decode(
            _rows(
                connection,
                select(j)
                .where(j.c.blueprint_id == blueprint_id, _until(j.c.queued_position, as_of))
                .order_by(j.c.queued_position),
            ),
            "parameters_json",
        )
        for job in jobs:
            job["events"] = _rows(
                connection,
                select(ce)
                .where(ce.c.job_id == job["job_id"], _until(ce.c.position, as_of))
                .order_by(ce.c.position),
            )
        artifacts = _rows(
            connection,
            select(a)
            .where(a.c.blueprint_id == blueprint_id, _until(a.c.stored_position, as_of))
            .order_by(a.c.stored_position),
        )
        grafts = _mark(
            _rows(
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
                .where(s.c.blueprint_id == blueprint_id, s.c.event_type == "SeedGrafted", _visible(s, as_of))
                .order_by(s.c.position),
            ),
            as_of,
        )
        commands = connection.execute(
            select(func.count()).select_from(c).where(c.c.blueprint_id == blueprint_id, _visible(c, as_of))
        ).scalar()
        outcomes = _outcomes(connection, schema.field_reports.c.blueprint_id == blueprint_id, as_of)
    return {
        "blueprint": blueprint,
        "as_of": as_of,
        "compile_jobs": jobs,
        "artifacts": artifacts,
        "grafts": grafts,
        "commands": commands,
        "field_report_outcomes": outcomes,
    }


# ---------------------------------------------------------------- policies


def audit_policy(
    engine: Engine, version: str, as_of: int | None = None, epoch: int | None = None
) -> dict[str, Any]:
    if epoch is not None:
        raise AuditError("--epoch needs a run to count epochs in; use --as-of POSITION for a policy")
    p, pe, d = schema.policies, schema.policy_events, schema.decisions
    with engine.connect() as connection:
        row = connection.execute(select(p).where(p.c.version == version)).first()
        decisions = connection.execute(
            select(func.count()).select_from(d).where(d.c.policy_version == version, _standing(d, as_of))
        ).scalar()
        if row is None and not decisions:
            raise NotFound(f"no policy version {version!r}")
        policy = (
            _decode([dict(row._mapping)], "training_metrics_json", "validation_checks_json")[0]
            if row
            else None
        )
        events = _decode(
            _rows(
                connection,
                select(pe)
                .where(pe.c.version == version, _until(pe.c.position, as_of))
                .order_by(pe.c.position),
            ),
            "detail_json",
        )
        outcomes = _outcomes(connection, schema.field_reports.c.policy_version == version, as_of)
    return {
        "policy": policy,
        "version": version,
        "as_of": as_of,
        "events": events,
        "decisions": decisions,
        "field_report_outcomes": outcomes,
    }


AUDITS = {
    "seed": audit_seed,
    "run": audit_run,
    "command": audit_command,
    "blueprint": audit_blueprint,
    "policy": audit_policy,
}
