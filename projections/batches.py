"""Batch application: a batch's row changes and the checkpoints they move, in one transaction (SPEC §6).

Exactly-once: a batch's rows and the checkpoints of the projections it touched commit in one transaction.
The transaction starts by locking the checkpoint rows (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: `SELECT …
FOR UPDATE`) and re-reading them, so each projection skips what it has already applied even if another
runner got there first; a checkpoint is only ever raised (`WHERE position < :new`). A process killed
mid-batch leaves an uncommitted transaction that the database rolls back.

Within a batch, changes are executed table by table with executemany: a change joins an earlier group of
the same statement unless a group in between touches one of its tables, which keeps the log order of every
table's changes while cutting the statements executed from one per change to a few per batch.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Any

from google.protobuf.message import Message
from sqlalchemy import Connection, Engine, text

from eventstore.api import EventFilter
from leyline import DEFAULT_REGISTRY, decode_payload, pb
from projections import metrics
from projections.db import open_db, write_connection
from projections.projectors import (
    Params,
    Projection,
    Row,
    Statement,
)
from projections.schema import projection_checkpoints

DEFAULT_BATCH_SIZE = 5000
GREEN_SUFFIX = "__green"
Progress = Callable[[int], None]  # called with the log position reached


class ProjectionError(Exception):
    """A projection cannot be run as asked (unknown name, an event it cannot decode, …)."""


@dataclass(frozen=True)
class Target:
    """A projection aimed at physical tables: its live tables, or the new tables of a blue/green rebuild."""

    projection: Projection
    checkpoint: str
    names: Mapping[str, str]

    @classmethod
    def live(cls, projection: Projection) -> Target:
        return cls(projection, projection.name, {name: name for name in projection.table_names})

    @classmethod
    def green(cls, projection: Projection) -> Target:
        names = {name: name + GREEN_SUFFIX for name in projection.table_names}
        return cls(projection, projection.name + GREEN_SUFFIX, names)


_NAMED_PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class _Renderer:
    """Statement → (SQL, physical tables, collapse key) for one target and dialect.

    SQL parameters are named `:x` for SQLite and `%(x)s` for psycopg; a positional statement's are `?` and
    `%s`.
    """

    def __init__(self, dialect: str, target: Target) -> None:
        self.pyformat = dialect != "sqlite"
        self.target = target
        self.cache: dict[Statement, tuple[str, tuple[str, ...], str | None]] = {}

    def __call__(self, statement: Statement) -> tuple[str, tuple[str, ...], str | None]:
        rendered = self.cache.get(statement)
        if rendered is None:
            sql = statement.render(self.target.names)
            if statement.positional:
                sql = _NAMED_PARAMETER.sub("%s" if self.pyformat else "?", sql)
            elif self.pyformat:
                sql = _NAMED_PARAMETER.sub(r"%(\1)s", sql)
            tables = tuple(self.target.names[name] for name in statement.tables)
            rendered = self.cache[statement] = (sql, tables, statement.collapse)
        return rendered


class _Changes:
    """The batch's changes grouped for executemany, keeping each table's changes in log order.

    A change joins the newest group of its statement while that group is open: no group created after it
    touches one of its tables. An applier renders each statement one way, so groups are keyed by statement.
    """

    def __init__(self) -> None:
        self.groups: list[tuple[str, list[Params | Row] | dict[Any, Params]]] = []
        self.open: dict[Statement, Callable[[Params | Row], None]] = {}  # adds a change to the open group
        self.open_on: dict[str, Statement] = {}  # table → statement of the open group touching it

    def new_group(self, statement: Statement, render: _Renderer) -> Callable[[Params | Row], None]:
        """Open a group for `statement`, closing those on its tables; returns what adds a change to it."""
        sql, tables, collapse = render(statement)
        for table in tables:
            other = self.open_on.get(table)
            if other is not None:
                self.open.pop(other, None)
            self.open_on[table] = statement
        add: Callable[[Params | Row], None]
        if collapse is None:
            rows: list[Params | Row] = []
            self.groups.append((sql, rows))
            add = rows.append
        else:
            keyed: dict[Any, Params] = {}
            self.groups.append((sql, keyed))

            def add(params: Params | Row) -> None:
                assert isinstance(params, dict)
                keyed[params[collapse]] = params

        self.open[statement] = add
        return add

    def execute(self, cursor: Any) -> None:
        for sql, rows in self.groups:
            cursor.executemany(sql, list(rows.values()) if isinstance(rows, dict) else rows)


def _current_message(event_type: str) -> tuple[type[Message] | None, int]:
    """The payload class and schema version of an event type. Payloads written at that version are parsed
    directly; older ones (upcast) and those of unregistered types (an error) go through decode_payload.
    """
    if event_type not in DEFAULT_REGISTRY:
        return None, 0
    registered = DEFAULT_REGISTRY.get(event_type)
    return registered.message, registered.schema_version


class Applier:
    def __init__(self, targets: Sequence[Target], dialect: str) -> None:
        self.targets = list(targets)
        self.renderers = {target.checkpoint: _Renderer(dialect, target) for target in self.targets}
        self.by_type: dict[str, list[Target]] = {}
        for target in self.targets:
            for event_type in target.projection.event_types:
                self.by_type.setdefault(event_type, []).append(target)
        self.consumers = {
            event_type: (
                *_current_message(event_type),
                [(t.checkpoint, t.projection.project, self.renderers[t.checkpoint]) for t in targets],
            )
            for event_type, targets in self.by_type.items()
        }

    @property
    def event_filter(self) -> EventFilter:
        return EventFilter(event_types=frozenset(self.by_type))

    def collect(
        self, events: Sequence[pb.EventEnvelope], floors: Mapping[str, int]
    ) -> tuple[_Changes, dict[str, int]]:
        """The changes of `events` above each target's floor, and the events applied per target."""
        changes = _Changes()
        counts = dict.fromkeys((target.checkpoint for target in self.targets), 0)
        renderers, consumers, open_groups = self.renderers, self.consumers, changes.open
        for envelope in events:
            consumer = consumers.get(envelope.event_type)
            if consumer is None:
                continue
            message, version, consuming = consumer
            position = envelope.global_position
            payload = None
            for checkpoint, project, render in consuming:
                if position <= floors[checkpoint]:
                    continue
                if payload is None:
                    try:
                        if message is not None and envelope.schema_version == version:
                            payload = message.FromString(envelope.payload)
                        else:
                            payload = decode_payload(envelope)
                    except Exception as exc:
                        raise ProjectionError(
                            f"event at position {position} ({envelope.event_type}) cannot be decoded: {exc}"
                        ) from exc
                for statement, params in project(envelope, payload):
                    (open_groups.get(statement) or changes.new_group(statement, render))(params)
                counts[checkpoint] += 1
        for target in self.targets:
            finish = target.projection.finish_batch
            if finish is not None and counts[target.checkpoint]:
                render = renderers[target.checkpoint]
                for statement, params in finish():
                    (open_groups.get(statement) or changes.new_group(statement, render))(params)
        return changes, counts

    def apply(
        self, cursor: Any, events: Sequence[pb.EventEnvelope], floors: Mapping[str, int]
    ) -> dict[str, int]:
        """Execute the changes of `events` above each target's floor; returns events applied per target."""
        changes, counts = self.collect(events, floors)
        changes.execute(cursor)
        return counts


# ---------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Checkpoint:
    name: str
    position: int
    version: int


def read_checkpoints(connection: Connection, names: Iterable[str] | None = None) -> dict[str, Checkpoint]:
    rows = connection.execute(projection_checkpoints.select()).all()
    wanted = set(names) if names is not None else None
    return {
        row.name: Checkpoint(row.name, row.position, row.version)
        for row in rows
        if wanted is None or row.name in wanted
    }


def lowest_checkpoint(engine: Engine, targets: Sequence[Target]) -> int:
    """Where reading the log resumes: the lowest checkpoint of the targets (0 for one never applied)."""
    with engine.connect() as connection:
        known = read_checkpoints(connection, [target.checkpoint for target in targets])
    return min((known[t.checkpoint].position if t.checkpoint in known else 0) for t in targets)


def lock_checkpoints(connection: Connection, targets: Sequence[Target]) -> dict[str, Checkpoint]:
    """Create missing checkpoint rows at 0 and read them all under the write lock."""
    now = time.time_ns()
    connection.execute(
        text(
            "INSERT INTO projection_checkpoints (name, position, version, updated_at_ns) "
            "VALUES (:name, 0, :version, :now) ON CONFLICT (name) DO NOTHING"
        ),
        [{"name": t.checkpoint, "version": t.projection.version, "now": now} for t in targets],
    )
    names = [target.checkpoint for target in targets]
    query = projection_checkpoints.select().where(projection_checkpoints.c.name.in_(names))
    if connection.dialect.name != "sqlite":
        query = query.with_for_update()
    rows = connection.execute(query).all()
    return {row.name: Checkpoint(row.name, row.position, row.version) for row in rows}


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


def commit_batch(
    engine: Engine, applier: Applier, events: Sequence[pb.EventEnvelope], upto: int
) -> dict[str, int]:
    """Apply one batch and raise the checkpoints to `upto` in a single transaction."""
    started = time.perf_counter()
    with write_connection(engine) as connection, connection.begin():
        checkpoints = lock_checkpoints(connection, applier.targets)
        floors = {name: checkpoint.position for name, checkpoint in checkpoints.items()}
        counts = applier.apply(connection.connection.cursor(), events, floors)
        behind = [name for name, position in floors.items() if position < upto]
        raise_checkpoints(connection, behind, upto)
    metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
    metrics.BATCH_EVENTS.observe(len(events))
    for target in applier.targets:
        metrics.EVENTS_APPLIED.labels(target.projection.name).inc(counts[target.checkpoint])
        metrics.CHECKPOINT_POSITION.labels(target.projection.name).set(max(upto, floors[target.checkpoint]))
    if events:
        metrics.LAG_SECONDS.set(max(0.0, (time.time_ns() - events[-1].occurred_at_ns) / 1e9))
    return counts


def chunks(events: Iterable[pb.EventEnvelope], size: int) -> Iterator[list[pb.EventEnvelope]]:
    iterator = iter(events)
    while chunk := list(islice(iterator, size)):
        yield chunk


@contextmanager
def engine_for(db: Engine | str) -> Iterator[Engine]:
    """The engine given, or one opened on the URL given and disposed of afterwards."""
    if isinstance(db, Engine):
        yield db
        return
    engine = open_db(db)
    try:
        yield engine
    finally:
        engine.dispose()


def set_checkpoint(connection: Connection, name: str, position: int, version: int) -> None:
    connection.execute(
        text(
            "UPDATE projection_checkpoints SET position = :position, version = :version, "
            "updated_at_ns = :now WHERE name = :name"
        ),
        {"name": name, "position": position, "version": version, "now": time.time_ns()},
    )
