"""Reads of the PostgreSQL store: the head, and pages of the log up to it that never step over a missing
position (positions are gap-free by construction: a hole is a deleted row, never an event still being
committed).

Where several appenders are connected, an append's events are visible from their commit, a moment before
that commit is flushed (eventstore.postgres.append_sql). A read returns nothing that a crash could still
take back: `durable` checks that the WAL is flushed as far as it was written when the read's data was seen
(everything committed by then lies before that point); if it is not, one transaction that writes a WAL
record commits durably, which flushes everything before it. Reads between appends find the WAL flushed
already. On a hot standby the check is skipped (it could neither read the insert position nor write): a
standby receives only WAL its primary has flushed, so whatever it shows is durable there already."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from eventstore.api import CorruptLogError, EventFilter
from eventstore.postgres.tables import Tables
from leyline import pb

PAGE = 2000
parse = pb.EventEnvelope.FromString


def head(tables: Tables, connection: Connection) -> int:
    """The head, made durable (see `durable`) before it is returned."""
    head_table = tables.head
    position, flushed = connection.execute(
        sa.select(head_table.c.position, _FLUSHED).where(head_table.c.id == 1)
    ).one()
    if not flushed:
        _flush(connection)
    return int(position)


def durable(connection: Connection) -> None:
    """Make what the connection's statements have seen so far durable (READ COMMITTED: every statement
    before this one saw commits whose records precede the WAL's insert position read here)."""
    if not connection.execute(sa.select(_FLUSHED)).scalar_one():
        _flush(connection)


def _flush(connection: Connection) -> None:
    connection.execute(_EMIT)
    connection.commit()  # durable: it wrote WAL, so its commit waits for the flush of all before it


_EMIT = sa.text("SELECT pg_logical_emit_message(true, 'esper.read', ''::text)")
# CASE, not OR: its branches are evaluated in order, and a standby refuses pg_current_wal_insert_lsn()
_FLUSHED = sa.case(
    (sa.func.pg_is_in_recovery(), sa.true()),
    else_=sa.func.pg_current_wal_insert_lsn() <= sa.func.pg_current_wal_flush_lsn(),
)


def page_query(
    tables: Tables, first: int, last: int, event_filter: EventFilter, limit: int
) -> sa.Select[Any]:
    columns = tables.events.c
    query = sa.select(columns.position, columns.data).where(
        columns.position >= first, columns.position <= last
    )
    if event_filter.streams:
        query = query.where(columns.stream.in_(sorted(event_filter.streams)))
    if event_filter.categories:
        query = query.where(columns.category.in_(sorted(event_filter.categories)))
    if event_filter.event_types:
        query = query.where(columns.event_type.in_(sorted(event_filter.event_types)))
    return query.order_by(columns.position).limit(limit)


def pages(
    engine: Engine, tables: Tables, first: int, last: int, event_filter: EventFilter, limit: int | None
) -> Iterator[pb.EventEnvelope]:
    """Pages of first..last; a position missing from the table raises CorruptLogError when the read
    reaches it, as the file store does for a missing record."""
    remaining = limit
    filtered = bool(event_filter.streams or event_filter.categories or event_filter.event_types)
    while first <= last and (remaining is None or remaining > 0):
        size = PAGE if remaining is None else min(PAGE, remaining)
        with engine.connect() as connection:
            rows = connection.execute(page_query(tables, first, last, event_filter, size)).all()
            covered = rows[-1][0] if len(rows) == size else last
            hole = None
            if filtered or not _contiguous(rows, first, covered):
                hole = _first_hole(tables, connection, first, covered)
        for position, data in rows:
            if hole is not None and position > hole:
                break
            yield parse(data)
        if hole is not None:
            raise CorruptLogError(
                f"{tables.metadata.schema}.events",
                0,
                hole,
                "no row holds this position although the head is past it (positions are gap-free: "
                "a row was deleted); `esper verify --store URL` checks the whole table",
            )
        if not rows:
            return
        if remaining is not None:
            remaining -= len(rows)
        first = rows[-1][0] + 1


def _first_hole(tables: Tables, connection: Connection, first: int, last: int) -> int | None:
    """The first position of first..last that has no row, if any."""
    position = tables.events.c.position
    count = connection.execute(
        sa.select(sa.func.count()).where(position >= first, position <= last)
    ).scalar_one()
    if count == last - first + 1:
        return None
    return int(
        connection.execute(
            sa.text(
                "SELECT p FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS p "
                f'WHERE NOT EXISTS (SELECT 1 FROM "{tables.metadata.schema}".events e '
                "WHERE e.position = p) LIMIT 1"
            ),
            {"first": first, "last": last},
        ).scalar_one()
    )


def _contiguous(rows: Sequence[Any], first: int, last: int) -> bool:
    """Whether an unfiltered page of (position, data) rows holds exactly the positions first..last."""
    return len(rows) == last - first + 1 and (not rows or (rows[0][0] == first and rows[-1][0] == last))
