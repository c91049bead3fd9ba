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
from sqlalchemy import Engine

from eventstore.api import EventFilter
from leyline import DEFAULT_REGISTRY, decode_payload, pb
from projections import metrics
from projections.checkpoints import (
    Checkpoint,
    lock_checkpoints,
    raise_checkpoints,
    read_checkpoints,
    record_stop,
)
from projections.db import open_db, write_connection
from projections.errors import Stop
from projections.projectors import (
    Params,
    Projection,
    Row,
    Statement,
)

DEFAULT_BATCH_SIZE = 5000
GREEN_SUFFIX = "__green"
STOPPED = 2**63 - 1  # the floor of a stopped projection: above every position, so nothing is applied
Progress = Callable[[int], None]  # called with the log position reached


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
        self, events: Sequence[pb.EventEnvelope], floors: dict[str, int]
    ) -> tuple[_Changes, dict[str, int], dict[str, Stop]]:
        """The changes of `events` above each target's floor, the events applied per target, and where
        targets stopped: an event a target cannot decode or apply stops it there (its floor becomes
        STOPPED, in `floors` itself, so later batches given the same mapping skip it too) while the other
        targets go on."""
        changes = _Changes()
        counts = dict.fromkeys((target.checkpoint for target in self.targets), 0)
        stops: dict[str, Stop] = {}
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
                try:
                    if payload is None:
                        if message is not None and envelope.schema_version == version:
                            payload = message.FromString(envelope.payload)
                        else:
                            payload = decode_payload(envelope)
                except Exception as exc:
                    stop = Stop(
                        position, envelope.event_type, f"its payload cannot be decoded: {_reason(exc)}"
                    )
                    for stopped, _, _ in consuming:
                        if position > floors[stopped]:
                            stops[stopped], floors[stopped] = stop, STOPPED
                    break
                try:
                    projected = project(envelope, payload)
                except Exception as exc:
                    reason = f"the projector failed on it: {_reason(exc)}"
                    stops[checkpoint], floors[checkpoint] = (
                        Stop(position, envelope.event_type, reason),
                        STOPPED,
                    )
                    continue
                for statement, params in projected:
                    (open_groups.get(statement) or changes.new_group(statement, render))(params)
                counts[checkpoint] += 1
        for target in self.targets:
            finish = target.projection.finish_batch
            if finish is not None and counts[target.checkpoint]:
                render = renderers[target.checkpoint]
                for statement, params in finish():
                    (open_groups.get(statement) or changes.new_group(statement, render))(params)
        return changes, counts, stops

    def apply(
        self, cursor: Any, events: Sequence[pb.EventEnvelope], floors: dict[str, int]
    ) -> tuple[dict[str, int], dict[str, Stop]]:
        """Execute the changes of `events` above each target's floor; returns events applied per target
        and the targets that stopped (see `collect`)."""
        changes, counts, stops = self.collect(events, floors)
        changes.execute(cursor)
        return counts, stops

    def versions(self) -> dict[str, int]:
        """Checkpoint name → code version of each target, for `lock_checkpoints`."""
        return {target.checkpoint: target.projection.version for target in self.targets}


def _reason(exc: BaseException) -> str:
    """An exception as one line: its type, and its message without line breaks."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def floors_of(checkpoints: Mapping[str, Checkpoint]) -> dict[str, int]:
    """Each checkpoint's position, or STOPPED for a projection stopped at an event it cannot apply."""
    return {name: STOPPED if cp.stop is not None else cp.position for name, cp in checkpoints.items()}


# ---------------------------------------------------------------- one batch


def lowest_checkpoint(engine: Engine, targets: Sequence[Target]) -> int | None:
    """Where reading the log resumes: the lowest checkpoint of the targets still running (0 for one never
    applied), None when every target is stopped."""
    with engine.connect() as connection:
        known = read_checkpoints(connection, [target.checkpoint for target in targets])
    running = [
        known[t.checkpoint].position if t.checkpoint in known else 0
        for t in targets
        if t.checkpoint not in known or known[t.checkpoint].stop is None
    ]
    return min(running, default=None)


def commit_batch(
    engine: Engine, applier: Applier, events: Sequence[pb.EventEnvelope], upto: int
) -> dict[str, int]:
    """Apply one batch and raise the checkpoints to `upto` in a single transaction; a projection that
    cannot apply one of the events stops just below it instead (recorded on its checkpoint)."""
    started = time.perf_counter()
    with write_connection(engine) as connection, connection.begin():
        checkpoints = lock_checkpoints(connection, applier.versions())
        floors = floors_of(checkpoints)
        counts, stops = applier.apply(connection.connection.cursor(), events, floors)
        for name, stop in stops.items():
            record_stop(connection, name, stop)
        behind = [name for name, position in floors.items() if position < upto]
        raise_checkpoints(connection, behind, upto)
    metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
    metrics.BATCH_EVENTS.observe(len(events))
    for target in applier.targets:
        name, checkpoint = target.projection.name, checkpoints[target.checkpoint]
        stopped_at = stops.get(target.checkpoint) or checkpoint.stop
        metrics.EVENTS_APPLIED.labels(name).inc(counts[target.checkpoint])
        reached = stopped_at.position - 1 if stopped_at is not None else max(upto, checkpoint.position)
        metrics.CHECKPOINT_POSITION.labels(name).set(reached)
        metrics.STOPPED.labels(name).set(stopped_at is not None)
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
