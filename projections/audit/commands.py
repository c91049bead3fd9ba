"""Audit of a command: the decision that issued it, what it did and its field report."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, or_, select

from projections import schema
from projections.audit.common import (
    NotFound,
    decode_json,
    decode_packets,
    mark_superseded,
    read_history,
    resolve_as_of,
)


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
        as_of = resolve_as_of(connection, run_id, as_of, epoch)
        command = (
            decode_json(mark_superseded([dict(row._mapping)], as_of), "command_json")[0] if row else None
        )
        if command is not None and as_of is not None and command["position"] > as_of:
            command = None
        decision = None
        packet = None
        if decision_row is not None and (as_of is None or decision_row.position <= as_of):
            decision = decode_json(mark_superseded([dict(decision_row._mapping)], as_of), "inputs_json")[0]
            packet_row = connection.execute(
                select(e).where(e.c.run_id == decision["run_id"], e.c.packet_id == decision["packet_id"])
            ).first()
            if packet_row is not None:
                packet = decode_packets(mark_superseded([dict(packet_row._mapping)], as_of))[0]
        effects = decode_json(
            read_history(
                connection, s, or_(s.c.command_id == command_id, s.c.correlation_id == command_id), as_of
            ),
            "gates_json",
            "detail_json",
        )
        reports = read_history(connection, f, f.c.command_id == command_id, as_of)
    return {
        "command_id": command_id,
        "as_of": as_of,
        "state_packet": packet,
        "decision": decision,
        "command": command,
        "effects": effects,
        "field_reports": decode_json(reports, "metrics_json"),
    }
