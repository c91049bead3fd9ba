"""What every audit query shares: errors, as-of filters and row decoding."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, and_, func, or_, select, true

from leyline import pb
from projections import schema
from projections.projectors import STAGES


class AuditError(Exception):
    """The question cannot be answered as asked (bad combination of options)."""


class NotFound(Exception):
    """No such seed, run, command, blueprint or policy in the read models."""


def visible_at(table: Table, as_of: int | None) -> ColumnElement[bool]:
    if as_of is None:
        return true()
    superseded = table.c.superseded_at
    return and_(table.c.position <= as_of, or_(superseded.is_(None), superseded > as_of))


def standing_at(table: Table, as_of: int | None) -> ColumnElement[bool]:
    """Rows that are part of the state (not superseded) as of the position, or now."""
    if as_of is None:
        return table.c.superseded_at.is_(None)
    return visible_at(table, as_of)


def until_at(column: Any, as_of: int | None) -> ColumnElement[bool]:
    return true() if as_of is None else column <= as_of


def fetch_rows(connection: Connection, query: Any) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in connection.execute(query)]


def mark_superseded(rows: list[dict[str, Any]], as_of: int | None) -> list[dict[str, Any]]:
    """Turn `superseded_at` into the `superseded` flag as seen from `as_of` (or now)."""
    for row in rows:
        at = row.get("superseded_at")
        row["superseded"] = at is not None and (as_of is None or at <= as_of)
        if as_of is not None and at is not None and at > as_of:
            row["superseded_at"] = None
    return rows


def read_history(
    connection: Connection, table: Table, condition: ColumnElement[bool], as_of: int | None
) -> list[dict[str, Any]]:
    """The rows of `table` meeting `condition` visible as of `as_of`, in log order, marked."""
    query = select(table).where(condition, visible_at(table, as_of)).order_by(table.c.position)
    return mark_superseded(fetch_rows(connection, query), as_of)


def outcome_counts(
    connection: Connection, condition: ColumnElement[bool], as_of: int | None
) -> dict[str | None, int]:
    """Standing field reports meeting `condition`, counted by outcome."""
    f = schema.field_reports
    query = select(f.c.outcome, func.count()).where(condition, standing_at(f, as_of)).group_by(f.c.outcome)
    return {outcome: count for outcome, count in connection.execute(query)}


def decode_json(rows: list[dict[str, Any]], *columns: str) -> list[dict[str, Any]]:
    for row in rows:
        for column in columns:
            value = row.pop(column, None)
            row[column.removesuffix("_json")] = json.loads(value) if value else None
    return rows


def decode_packets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
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


def resolve_as_of(
    connection: Connection, run_id: str | None, as_of: int | None, epoch: int | None
) -> int | None:
    if epoch is None:
        return as_of
    if as_of is not None:
        raise AuditError("give --as-of or --epoch, not both")
    if run_id is None:
        raise AuditError("--epoch needs a run to count epochs in; use --as-of POSITION")
    return epoch_position(connection, run_id, epoch)
