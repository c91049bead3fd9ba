"""The projection runner: catch-up, live follow, in-place and blue/green rebuilds (SPEC §6).

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

import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Any

from google.protobuf.message import Message
from sqlalchemy import Column, Connection, Engine, Index, MetaData, Table, text
from sqlalchemy.exc import OperationalError

from eventstore.api import EventFilter, EventStore
from leyline import DEFAULT_REGISTRY, decode_payload, pb
from projections import metrics
from projections.db import open_db, write_connection
from projections.projectors import (
    DEFAULT_FIELD_REPORT_RETENTION_S,
    Params,
    Projection,
    Row,
    Statement,
    build_projections,
)
from projections.schema import projection_checkpoints

DEFAULT_BATCH_SIZE = 5000
GREEN_SUFFIX = "__green"
SWAP_ATTEMPTS = 200
SWAP_LOCK_TIMEOUT_MS = 200
ENV_FIELD_REPORT_RETENTION_S = "ESPER_FIELD_REPORT_RETENTION_S"
Progress = Callable[[int], None]  # called with the log position reached


class ProjectionError(Exception):
    """A projection cannot be run as asked (unknown name, an event it cannot decode, …)."""


def default_projections() -> list[Projection]:
    """The read models; field-report retention from $ESPER_FIELD_REPORT_RETENTION_S (default 24 h)."""
    retention = os.environ.get(ENV_FIELD_REPORT_RETENTION_S)
    try:
        seconds = float(retention) if retention else DEFAULT_FIELD_REPORT_RETENTION_S
    except ValueError:
        raise ProjectionError(
            f"{ENV_FIELD_REPORT_RETENTION_S}={retention!r} is not a number of seconds"
        ) from None
    return build_projections(seconds)


def select(names: Iterable[str] | None, projections: Sequence[Projection] | None = None) -> list[Projection]:
    available = list(projections) if projections is not None else default_projections()
    if names is None:
        return available
    by_name = {projection.name: projection for projection in available}
    chosen = []
    for name in names:
        if name not in by_name:
            raise ProjectionError(f"unknown projection {name!r}; choose from: {', '.join(by_name)}")
        chosen.append(by_name[name])
    return chosen


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


class _Applier:
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


def _lowest_checkpoint(engine: Engine, targets: Sequence[Target]) -> int:
    """Where reading the log resumes: the lowest checkpoint of the targets (0 for one never applied)."""
    with engine.connect() as connection:
        known = read_checkpoints(connection, [target.checkpoint for target in targets])
    return min((known[t.checkpoint].position if t.checkpoint in known else 0) for t in targets)


def _lock_checkpoints(connection: Connection, targets: Sequence[Target]) -> dict[str, Checkpoint]:
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


def _raise_checkpoints(connection: Connection, names: Sequence[str], position: int) -> None:
    if not names:
        return
    connection.execute(
        text(
            "UPDATE projection_checkpoints SET position = :position, updated_at_ns = :now "
            "WHERE name = :name AND position < :position"
        ),
        [{"name": name, "position": position, "now": time.time_ns()} for name in names],
    )


def _commit_batch(
    engine: Engine, applier: _Applier, events: Sequence[pb.EventEnvelope], upto: int
) -> dict[str, int]:
    """Apply one batch and raise the checkpoints to `upto` in a single transaction."""
    started = time.perf_counter()
    with write_connection(engine) as connection, connection.begin():
        checkpoints = _lock_checkpoints(connection, applier.targets)
        floors = {name: checkpoint.position for name, checkpoint in checkpoints.items()}
        counts = applier.apply(connection.connection.cursor(), events, floors)
        behind = [name for name, position in floors.items() if position < upto]
        _raise_checkpoints(connection, behind, upto)
    metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
    metrics.BATCH_EVENTS.observe(len(events))
    for target in applier.targets:
        metrics.EVENTS_APPLIED.labels(target.projection.name).inc(counts[target.checkpoint])
        metrics.CHECKPOINT_POSITION.labels(target.projection.name).set(max(upto, floors[target.checkpoint]))
    if events:
        metrics.LAG_SECONDS.set(max(0.0, (time.time_ns() - events[-1].occurred_at_ns) / 1e9))
    return counts


def _chunks(events: Iterable[pb.EventEnvelope], size: int) -> Iterator[list[pb.EventEnvelope]]:
    iterator = iter(events)
    while chunk := list(islice(iterator, size)):
        yield chunk


@contextmanager
def _engine(db: Engine | str) -> Iterator[Engine]:
    """The engine given, or one opened on the URL given and disposed of afterwards."""
    if isinstance(db, Engine):
        yield db
        return
    engine = open_db(db)
    try:
        yield engine
    finally:
        engine.dispose()


# ---------------------------------------------------------------- catch-up and follow


def apply_batch(
    db: Engine | str,
    events: Sequence[pb.EventEnvelope],
    names: Iterable[str] | None = None,
    *,
    projections: Sequence[Projection] | None = None,
    upto: int | None = None,
) -> dict[str, int]:
    """Apply events already read from the log (in log order) as one transaction; events per projection.

    The checkpoints move to `upto` (default: the last event's position); events at or below a
    projection's checkpoint are skipped, so re-applying a batch changes nothing.
    """
    with _engine(db) as engine:
        targets = [Target.live(projection) for projection in select(names, projections)]
        last = upto if upto is not None else (events[-1].global_position if events else 0)
        counts = _commit_batch(engine, _Applier(targets, engine.dialect.name), events, last)
        return {target.projection.name: counts[target.checkpoint] for target in targets}


@dataclass
class CatchUp:
    head: int
    applied: dict[str, int]  # events applied per projection
    positions: dict[str, int]  # checkpoint per projection afterwards


def catch_up(
    store: EventStore,
    db: Engine | str,
    names: Iterable[str] | None = None,
    *,
    projections: Sequence[Projection] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
) -> CatchUp:
    """Bring the projections up to the head of the log, batch by batch; returns what it applied."""
    with _engine(db) as engine:
        targets = [Target.live(projection) for projection in select(names, projections)]
        applier = _Applier(targets, engine.dialect.name)
        head = store.head_position()
        start = _lowest_checkpoint(engine, targets)
        applied = dict.fromkeys((target.projection.name for target in targets), 0)
        if start < head:
            events = store.read_all(
                from_position=start + 1, event_filter=applier.event_filter, to_position=head
            )
            for chunk in _chunks(events, batch_size):
                counts = _commit_batch(engine, applier, chunk, chunk[-1].global_position)
                for target in targets:
                    applied[target.projection.name] += counts[target.checkpoint]
                if progress is not None:
                    progress(chunk[-1].global_position)
        # Every position up to the head has been examined, also where the last events were of no interest.
        _commit_batch(engine, applier, [], head)
        with engine.connect() as connection:
            after = read_checkpoints(connection, [target.checkpoint for target in targets])
        for target in targets:
            metrics.LAG_EVENTS.labels(target.projection.name).set(head - after[target.checkpoint].position)
        return CatchUp(head, applied, {name: checkpoint.position for name, checkpoint in after.items()})


def follow(
    store: EventStore,
    db: Engine | str,
    stop: threading.Event,
    *,
    names: Iterable[str] | None = None,
    projections: Sequence[Projection] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    poll_timeout: float = 0.05,
    on_batch: Callable[[list[pb.EventEnvelope]], None] | None = None,
) -> None:
    """Catch up, then apply new events as they are committed until `stop` is set."""
    with _engine(db) as engine:
        targets = [Target.live(projection) for projection in select(names, projections)]
        applier = _Applier(targets, engine.dialect.name)
        start = _lowest_checkpoint(engine, targets)
        subscription = store.subscribe(
            from_position=start + 1, event_filter=applier.event_filter, timeout=poll_timeout
        )
        try:
            while not stop.is_set():
                events = subscription.poll(timeout=poll_timeout, max_events=batch_size)
                if events:
                    _commit_batch(engine, applier, events, events[-1].global_position)
                    behind = max(0, store.head_position() - events[-1].global_position)
                    for target in targets:
                        metrics.LAG_EVENTS.labels(target.projection.name).set(behind)
                    if on_batch is not None:
                        on_batch(events)
        finally:
            subscription.close()


# ---------------------------------------------------------------- rebuilds


@dataclass
class ProjectionStatus:
    name: str
    position: int
    stored_version: int | None
    code_version: int

    @property
    def stale(self) -> bool:
        """Built by other code than this (or never built): needs a rebuild."""
        return self.stored_version != self.code_version


def status(db: Engine | str, projections: Sequence[Projection] | None = None) -> list[ProjectionStatus]:
    with _engine(db) as engine:
        with engine.connect() as connection:
            known = read_checkpoints(connection)
        result = []
        for projection in select(None, projections):
            checkpoint = known.get(projection.name)
            result.append(
                ProjectionStatus(
                    projection.name,
                    checkpoint.position if checkpoint else 0,
                    checkpoint.version if checkpoint else None,
                    projection.version,
                )
            )
        return result


def _set_checkpoint(connection: Connection, name: str, position: int, version: int) -> None:
    connection.execute(
        text(
            "UPDATE projection_checkpoints SET position = :position, version = :version, "
            "updated_at_ns = :now WHERE name = :name"
        ),
        {"name": name, "position": position, "version": version, "now": time.time_ns()},
    )


def _rebuild_in_place(
    store: EventStore,
    engine: Engine,
    projections: Sequence[Projection],
    batch_size: int,
    progress: Progress | None,
) -> dict[str, int]:
    """Empty and refill the tables in one transaction: readers see the old rows until it commits."""
    targets = [Target.live(projection) for projection in projections]
    applier = _Applier(targets, engine.dialect.name)
    with write_connection(engine) as connection, connection.begin():
        before = _lock_checkpoints(connection, targets)
        for projection in projections:
            for table in projection.tables:
                connection.execute(table.delete())
        head = store.head_position()
        floors = dict.fromkeys((target.checkpoint for target in targets), 0)
        cursor = connection.connection.cursor()
        events = store.read_all(from_position=1, event_filter=applier.event_filter, to_position=head)
        for chunk in _chunks(events, batch_size):
            applier.apply(cursor, chunk, floors)
            if progress is not None:
                progress(chunk[-1].global_position)
        for target in targets:
            # The head is read inside the lock, so it is never behind what the old rows had applied.
            position = max(head, before[target.checkpoint].position)
            _set_checkpoint(connection, target.checkpoint, position, target.projection.version)
    return dict.fromkeys((projection.name for projection in projections), head)


def _green_table(table: Table, metadata: MetaData) -> Table:
    """The new table of a blue/green rebuild: the same columns, key and indexes (the indexes under suffixed
    names, index names being global; the swap puts the live names in their place). Without them, the
    rollback statements applied during the build scan whole tables."""
    columns = [
        Column(
            column.name,
            column.type,
            primary_key=column.primary_key,
            nullable=column.nullable,
            autoincrement=False,
        )
        for column in table.columns
    ]
    green = Table(table.name + GREEN_SUFFIX, metadata, *columns)
    for index in table.indexes:
        Index(str(index.name) + GREEN_SUFFIX, *(green.c[column.name] for column in index.columns))
    return green


def _lock_not_available(exc: OperationalError) -> bool:
    return getattr(exc.orig, "sqlstate", None) == "55P03"


def _swap(
    connection: Connection, store: EventStore, applier: _Applier, projections: Sequence[Projection]
) -> int:
    """Catch the new tables up, put them in place of the live ones, move the checkpoints; returns the head."""
    targets = applier.targets
    if connection.dialect.name != "sqlite":
        # Take every table's lock at once, giving up quickly: a reader holding one table while waiting for
        # another would otherwise deadlock with the swap, and the database could pick the reader as victim.
        # lock_timeout is below PostgreSQL's deadlock_timeout (1 s), so the swap always yields first.
        names = [t.name for p in projections for t in p.tables]
        tables = ", ".join([*names, *(name + GREEN_SUFFIX for name in names)])
        connection.execute(text(f"SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT_MS}ms'"))
        connection.execute(text(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE"))
    # Lock the live checkpoints too before reading the head: no incremental runner can commit past it until
    # the swap is done, so the new tables catch up with everything the old ones had.
    locked = _lock_checkpoints(connection, [*targets, *(Target.live(p) for p in projections)])
    floors = {target.checkpoint: locked[target.checkpoint].position for target in targets}
    live = {projection.name: locked[projection.name].position for projection in projections}
    final_head = max(store.head_position(), *live.values())
    late = store.read_all(
        from_position=min(floors.values()) + 1, event_filter=applier.event_filter, to_position=final_head
    )
    applier.apply(connection.connection.cursor(), list(late), floors)
    for projection in projections:
        for table in projection.tables:
            connection.execute(text(f"DROP TABLE {table.name}"))
            connection.execute(text(f"ALTER TABLE {table.name}{GREEN_SUFFIX} RENAME TO {table.name}"))
            for index in table.indexes:
                connection.execute(text(f"DROP INDEX {index.name}{GREEN_SUFFIX}"))
                index.create(connection)
        _set_checkpoint(connection, projection.name, final_head, projection.version)
    connection.execute(
        projection_checkpoints.delete().where(
            projection_checkpoints.c.name.in_([target.checkpoint for target in targets])
        )
    )
    return final_head


def _rebuild_blue_green(
    store: EventStore,
    engine: Engine,
    projections: Sequence[Projection],
    batch_size: int,
    progress: Progress | None,
) -> dict[str, int]:
    """Build into new tables while the live ones keep serving (and updating), then swap in one transaction."""
    targets = [Target.green(projection) for projection in projections]
    applier = _Applier(targets, engine.dialect.name)
    green = MetaData()
    for projection in projections:
        for table in projection.tables:
            _green_table(table, green)
    with write_connection(engine) as connection, connection.begin():
        green.drop_all(connection)
        green.create_all(connection)
        connection.execute(
            projection_checkpoints.delete().where(
                projection_checkpoints.c.name.in_([target.checkpoint for target in targets])
            )
        )
    head = store.head_position()
    events = store.read_all(from_position=1, event_filter=applier.event_filter, to_position=head)
    for chunk in _chunks(events, batch_size):
        _commit_batch(engine, applier, chunk, chunk[-1].global_position)
        if progress is not None:
            progress(chunk[-1].global_position)
    for attempt in range(SWAP_ATTEMPTS):
        try:
            with write_connection(engine) as connection, connection.begin():
                final_head = _swap(connection, store, applier, projections)
            break
        except OperationalError as exc:
            if not _lock_not_available(exc) or attempt == SWAP_ATTEMPTS - 1:
                raise
            time.sleep(min(1.0, 0.05 * (attempt + 1)))
    return dict.fromkeys((projection.name for projection in projections), final_head)


def rebuild(
    store: EventStore,
    db: Engine | str,
    names: Iterable[str] | None = None,
    *,
    blue_green: bool = False,
    projections: Sequence[Projection] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Rebuild the named projections from position 1; returns each one's checkpoint afterwards."""
    with _engine(db) as engine:
        chosen = select(names, projections)
        if not chosen:
            return {}
        started = time.perf_counter()
        if blue_green:
            result = _rebuild_blue_green(store, engine, chosen, batch_size, progress)
        else:
            result = _rebuild_in_place(store, engine, chosen, batch_size, progress)
        metrics.REBUILD_SECONDS.labels("blue_green" if blue_green else "in_place").observe(
            time.perf_counter() - started
        )
        return result


def stale(db: Engine | str, projections: Sequence[Projection] | None = None) -> list[str]:
    """Names of the projections whose stored version differs from the code's."""
    return [entry.name for entry in status(db, projections) if entry.stale]
