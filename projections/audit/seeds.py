"""Audit of a seed: its state, every transition with its gates, and the commands behind them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, and_, select

from projections import schema
from projections.audit.common import (
    NotFound,
    decode_json,
    read_history,
    resolve_as_of,
)

GRADIENTS = "SeedGradientsMeasured"  # the gradient window's measurements: a table of their own


def gradient_row(row: dict[str, Any]) -> dict[str, Any]:
    """One boundary of the gradient window, with the seed's gradient per parameter relative to the host's
    (None where the host received none)."""
    detail = row["detail"] or {}
    host = detail.get("host_norm_per_parameter") or 0.0
    ratio = detail.get("seed_norm_per_parameter", 0.0) / host if host > 0 else None
    keep = ("position", "seed_id", "superseded", "superseded_at")
    return {**{key: row.get(key) for key in keep}, **detail, "seed_to_host_per_parameter": ratio}


def seed_stream(seed: str) -> str:
    """Accept `seed-<run>.<slot>` or `<run>.<slot>`."""
    return seed if seed.startswith("seed-") else f"seed-{seed}"


def seed_state_of(events: Sequence[dict[str, Any]]) -> dict[str, Any]:
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


def read_commands(
    connection: Connection, command_ids: Iterable[str], as_of: int | None
) -> list[dict[str, Any]]:
    ids = sorted(set(command_ids))
    if not ids:
        return []
    c, d = schema.commands, schema.decisions
    commands = decode_json(read_history(connection, c, c.c.command_id.in_(ids), as_of), "command_json")
    decisions = decode_json(read_history(connection, d, d.c.command_id.in_(ids), as_of), "inputs_json")
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
        as_of = resolve_as_of(connection, run_id, as_of, epoch)
        rows = decode_json(
            read_history(connection, e, e.c.stream == stream, as_of), "gates_json", "detail_json"
        )
        history = [row for row in rows if row["event_type"] != GRADIENTS]
        state = seed_state_of(history)
        commands = read_commands(connection, (h["command_id"] for h in history if h["command_id"]), as_of)
        f = schema.field_reports
        reports = read_history(
            connection, f, and_(f.c.run_id == run_id, f.c.slot == int(slot_text or 0)), as_of
        )
    return {
        "seed": stream.removeprefix("seed-"),
        "stream": stream,
        "run_id": run_id,
        "slot": int(slot_text or 0),
        "as_of": as_of,
        "state": state,
        "history": history,
        "gradients": [gradient_row(row) for row in rows if row["event_type"] == GRADIENTS],
        "commands": commands,
        "field_reports": decode_json(reports, "metrics_json"),
    }
