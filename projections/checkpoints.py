"""The projections' checkpoints: the last log position each one applied, and where one stopped (SPEC §6).

A checkpoint row is written in the transaction that applies its rows. A projection that cannot decode or
apply an event records that event (position, type, reason) on its row and keeps its position just below
it; the runner then leaves it alone until a rebuild sets the checkpoint again, which clears the record.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from projections.errors import Stop
from projections.schema import projection_checkpoints


@dataclass(frozen=True)
class Checkpoint:
    name: str
    position: int
    version: int
    stop: Stop | None = None


def _checkpoint(row: Any) -> Checkpoint:
    stop = None
    if row.error_position is not None:
        stop = Stop(row.error_position, row.error_event_type or "", row.error or "")
    return Checkpoint(row.name, row.position, row.version, stop)


def read_checkpoints(connection: Connection, names: Iterable[str] | None = None) -> dict[str, Checkpoint]:
    rows = connection.execute(projection_checkpoints.select()).all()
    wanted = set(names) if names is not None else None
    return {row.name: _checkpoint(row) for row in rows if wanted is None or row.name in wanted}


def lock_checkpoints(connection: Connection, versions: Mapping[str, int]) -> dict[str, Checkpoint]:
    """Create missing checkpoint rows at 0 (with the version given per name) and read them all under the
    write lock."""
    now = time.time_ns()
    connection.execute(
        text(
            "INSERT INTO projection_checkpoints (name, position, version, updated_at_ns) "
            "VALUES (:name, 0, :version, :now) ON CONFLICT (name) DO NOTHING"
        ),
        [{"name": name, "version": version, "now": now} for name, version in versions.items()],
    )
    query = projection_checkpoints.select().where(projection_checkpoints.c.name.in_(list(versions)))
    if connection.dialect.name != "sqlite":
        query = query.with_for_update()
    return {row.name: _checkpoint(row) for row in connection.execute(query).all()}


def raise_checkpoints(connection: Connection, names: Sequence[str], position: int) -> None:
    if not names:
        return
    connection.execute(
        text(
            "UPDATE projection_checkpoints SET position = :position, updated_at_ns = :now "
            "WHERE name = :name AND position < :position"
        ),
        [{"name": name, "position": position, "now": time.time_ns()} for name in names],
    )


def set_checkpoint(connection: Connection, name: str, position: int, version: int) -> None:
    """Put a rebuilt projection's checkpoint in place; a stop it had recorded is cleared."""
    connection.execute(
        text(
            "UPDATE projection_checkpoints SET position = :position, version = :version, "
            "updated_at_ns = :now, error_position = NULL, error_event_type = NULL, error = NULL "
            "WHERE name = :name"
        ),
        {"name": name, "position": position, "version": version, "now": time.time_ns()},
    )


def record_stop(connection: Connection, name: str, stop: Stop) -> None:
    """Stop a projection just below the event it cannot apply, recording that event and why."""
    connection.execute(
        text(
            "UPDATE projection_checkpoints SET position = :position, updated_at_ns = :now, "
            "error_position = :error_position, error_event_type = :event_type, error = :reason "
            "WHERE name = :name"
        ),
        {
            "name": name,
            "position": stop.position - 1,
            "now": time.time_ns(),
            "error_position": stop.position,
            "event_type": stop.event_type,
            "reason": stop.reason,
        },
    )
