"""The PostgreSQL backend (SQLAlchemy 2 Core over psycopg 3), with the same contract as the file store.

Gap-free, commit-ordered positions under concurrent writers (several processes or hosts): an append is one
call of a server-side function (one round trip, one transaction) that first locks the single row of
`<schema>.head` (SELECT … FOR UPDATE), assigns positions from it, inserts its events, advances it and
commits. The row lock is held until commit, so the next writer can only read the head after this one's
events are committed: positions are handed out in commit order and a reader that sees position N has also
been able to see every position below N. (A sequence would hand out ids at insert and make them visible at
commit, letting a subscriber skip a late committer.) Readers never block writers: they read the head row
without locking, then events up to that head. Live subscribers LISTEN on `<schema>_appended`, which every
append NOTIFYs at commit. (The append function itself is SQL, in eventstore.postgres_append.)

This module is ~440 lines: the store keeps its tables, appends, reads, snapshots and subscription side by
side, as one backend of the EventStore protocol, the way the file store's façade does.

Tables (created when absent, in a schema of their own, `esper` by default): events (position primary key,
event_id unique for idempotency, stream + stream_version unique, category, event_type, the stamped
envelope bytes), streams (current version per stream), head, snapshots.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import crc32c
import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection, make_url

from eventstore import metrics
from eventstore.api import (
    ALL_EVENTS,
    CorruptLogError,
    EventFilter,
    EventStoreError,
    Expected,
    InvalidEvent,
    Snapshot,
    StoreUnavailable,
)
from eventstore.postgres_append import APPEND_FUNCTION, install_append_function
from eventstore.subscription import PollingSubscription
from leyline import category_of, pb

BACKEND = "postgres"
_parse = pb.EventEnvelope.FromString
PAGE = 2000
MAX_WAIT_S = 1.0
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def libpq_url(url: str) -> str:
    """The URL as psycopg's own connect() takes it (no SQLAlchemy driver name), password included."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def engine_url(url: str) -> sa.URL:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


class PostgresStore:
    def __init__(
        self,
        url: str,
        *,
        create: bool = True,
        schema: str = "esper",
        connect_timeout: int = 5,
        read_only: bool = False,
    ) -> None:
        """read_only: never create tables, refuse appends and snapshot writes (readers: replay, audit)."""
        create = create and not read_only
        self.read_only = read_only
        if not SCHEMA_NAME.match(schema):
            raise ValueError(f"schema name {schema!r} must be a lower-case SQL identifier")
        self.url = engine_url(url)
        self._display = make_url(url).render_as_string(hide_password=True)
        self.schema = schema
        self._engine = sa.create_engine(self.url, connect_args={"connect_timeout": connect_timeout})
        # Appends are one autocommitted statement on a connection of their own: no pool checkout, reset or
        # isolation-level change around each (each would be one more round trip).
        self._plain_url = libpq_url(url)
        self._connect_timeout = connect_timeout
        self._appender: psycopg.Connection[Any] | None = None
        self._append_lock = threading.Lock()
        metadata = sa.MetaData(schema=schema)
        self.events = sa.Table(
            "events",
            metadata,
            sa.Column("position", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("event_id", sa.Text, nullable=False, unique=True),
            sa.Column("stream", sa.Text, nullable=False),
            sa.Column("stream_version", sa.BigInteger, nullable=False),
            sa.Column("category", sa.Text, nullable=False, index=True),
            sa.Column("event_type", sa.Text, nullable=False, index=True),
            sa.Column("data", sa.LargeBinary, nullable=False),
            sa.UniqueConstraint("stream", "stream_version"),
        )
        self.streams = sa.Table(
            "streams",
            metadata,
            sa.Column("stream", sa.Text, primary_key=True),
            sa.Column("version", sa.BigInteger, nullable=False),
        )
        self.head = sa.Table(
            "head",
            metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("position", sa.BigInteger, nullable=False),
        )
        self.snapshots = sa.Table(
            "snapshots",
            metadata,
            sa.Column("stream", sa.Text, primary_key=True),
            sa.Column("version", sa.BigInteger, nullable=False),
            sa.Column("schema_version", sa.Integer, nullable=False),
            sa.Column("checksum", sa.BigInteger, nullable=False),
            sa.Column("data", sa.LargeBinary, nullable=False),
        )
        self._metadata = metadata
        self.channel = f"{schema}_appended"
        self._append_sql = (
            f'CALL "{schema}".{APPEND_FUNCTION}('
            "%(ids)s, %(streams)s, %(categories)s, %(types)s, %(data)s, %(expect_streams)s, "
            "%(expect_kinds)s, %(expect_versions)s::bigint[], NULL, NULL, NULL, NULL)"
        )
        started = time.perf_counter()
        try:
            with self._engine.begin() as connection:
                if create:
                    connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
                    metadata.create_all(connection)
                    connection.execute(
                        pg_insert(self.head)
                        .values(id=1, position=0)
                        .on_conflict_do_nothing(index_elements=["id"])
                    )
                    install_append_function(connection, schema)
                elif connection.execute(sa.select(self.head.c.position)).first() is None:
                    raise StoreUnavailable(f"{self._safe_url()}: no event store in schema {schema!r}")
        except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
            self._engine.dispose()
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            if isinstance(exc, sa.exc.OperationalError):
                raise StoreUnavailable(f"{self._safe_url()} does not answer: {reason}") from None
            raise StoreUnavailable(
                f"{self._safe_url()}: no event store in schema {schema!r} ({reason})"
            ) from None
        metrics.RECOVERY_DURATION.observe(time.perf_counter() - started)

    def _safe_url(self) -> str:
        return self._display

    # ------------------------------------------------------------------ appending

    def append(
        self, events: Sequence[pb.EventEnvelope], expected: Mapping[str, Expected] | None = None
    ) -> list[int]:
        if self.read_only:
            raise EventStoreError(
                f"{self._safe_url()} is open read-only: open it without read_only to append"
            )
        started = time.perf_counter()
        events = list(events)
        for event in events:
            if not event.event_id or not event.stream or not event.event_type:
                raise InvalidEvent("every event needs an event_id, an event_type and a stream")
        if not events:
            return []
        expected = dict(expected or {})
        data = [event.SerializeToString() for event in events]
        parameters: dict[str, list[Any]] = {
            "ids": [event.event_id for event in events],
            "streams": [event.stream for event in events],
            "categories": [category_of(event.stream) for event in events],
            "types": [event.event_type for event in events],
            "data": data,
            "expect_streams": list(expected),
            "expect_kinds": [expectation.kind for expectation in expected.values()],
            "expect_versions": [expectation.version for expectation in expected.values()],
        }
        positions, inserted, conflict = self._call_append(parameters)
        if conflict is not None:
            stream, actual = conflict
            metrics.CONFLICTS.labels(BACKEND).inc()
            expected[stream].check(stream, actual)
            raise EventStoreError(
                f"the server refused an append to {stream!r} (version {actual}) that Expected.check allows"
            )
        if inserted < len(events):
            metrics.DUPLICATES.labels(BACKEND).inc(len(events) - inserted)
        if inserted:
            metrics.BYTES_WRITTEN.labels(BACKEND).inc(sum(map(len, data)))
            metrics.FSYNC_BATCH_SIZE.observe(inserted)
        metrics.APPEND_LATENCY.labels(BACKEND).observe(time.perf_counter() - started)
        return positions

    def _call_append(self, parameters: dict[str, list[Any]]) -> tuple[list[int], int, tuple[str, int] | None]:
        """A connection the server dropped is retried once on a new one: appends are idempotent by
        event_id. A server that does not answer is StoreUnavailable."""
        with self._append_lock:
            try:
                return self._append_once(parameters)
            except psycopg.OperationalError:
                self._drop_appender()
            try:
                return self._append_once(parameters)
            except psycopg.OperationalError as exc:
                self._drop_appender()
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise StoreUnavailable(f"{self._safe_url()} does not answer: {reason}") from None

    def _append_once(self, parameters: dict[str, list[Any]]) -> tuple[list[int], int, tuple[str, int] | None]:
        if self._appender is None:
            self._appender = psycopg.connect(
                self._plain_url, autocommit=True, connect_timeout=self._connect_timeout
            )
        # binary: the envelopes cross as bytes (text format would hex-encode every one of them, and the
        # server parse the array literal back); prepared from the first call
        row = self._appender.execute(self._append_sql, parameters, prepare=True, binary=True).fetchone()
        assert row is not None
        positions, inserted, conflict_stream, conflict_actual = row
        if conflict_stream is not None:
            return [], 0, (conflict_stream, int(conflict_actual))
        return [int(position) for position in positions], int(inserted), None

    def _drop_appender(self) -> None:
        if self._appender is not None:
            self._appender.close()
            self._appender = None

    # ------------------------------------------------------------------ reading

    def head_position(self) -> int:
        with self._engine.connect() as connection:
            return self._head(connection)

    def _head(self, connection: Connection) -> int:
        return int(
            connection.execute(sa.select(self.head.c.position).where(self.head.c.id == 1)).scalar_one()
        )

    def stream_version(self, stream: str) -> int:
        with self._engine.connect() as connection:
            version = connection.execute(
                sa.select(self.streams.c.version).where(self.streams.c.stream == stream)
            ).scalar_one_or_none()
        return int(version or 0)

    def read_stream(
        self, stream: str, from_version: int = 1, limit: int | None = None
    ) -> list[pb.EventEnvelope]:
        query = (
            sa.select(self.events.c.data)
            .where(self.events.c.stream == stream, self.events.c.stream_version >= from_version)
            .order_by(self.events.c.stream_version)
        )
        if limit is not None:
            query = query.limit(limit)
        with self._engine.connect() as connection:
            return [_parse(data) for (data,) in connection.execute(query)]

    def read_all(
        self,
        from_position: int = 1,
        event_filter: EventFilter = ALL_EVENTS,
        limit: int | None = None,
        to_position: int | None = None,
    ) -> Iterable[pb.EventEnvelope]:
        with self._engine.connect() as connection:
            head = self._head(connection)
        last = head if to_position is None else min(head, to_position)
        return self._pages(from_position, last, event_filter, limit)

    def _query(self, first: int, last: int, event_filter: EventFilter, limit: int) -> sa.Select[Any]:
        columns = self.events.c
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

    def _pages(
        self, first: int, last: int, event_filter: EventFilter, limit: int | None
    ) -> Iterator[pb.EventEnvelope]:
        """Pages of first..last; a position missing from the table raises CorruptLogError when the read
        reaches it, as the file store does for a missing record (positions are gap-free by construction:
        a hole is a deleted row, never an event still being committed)."""
        remaining = limit
        filtered = bool(event_filter.streams or event_filter.categories or event_filter.event_types)
        while first <= last and (remaining is None or remaining > 0):
            size = PAGE if remaining is None else min(PAGE, remaining)
            with self._engine.connect() as connection:
                rows = connection.execute(self._query(first, last, event_filter, size)).all()
                covered = rows[-1][0] if len(rows) == size else last
                hole = None
                if filtered or not _contiguous(rows, first, covered):
                    hole = self._first_hole(connection, first, covered)
            for position, data in rows:
                if hole is not None and position > hole:
                    break
                yield _parse(data)
            if hole is not None:
                raise CorruptLogError(
                    f"{self.schema}.events",
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

    def _first_hole(self, connection: Connection, first: int, last: int) -> int | None:
        """The first position of first..last that has no row, if any."""
        position = self.events.c.position
        count = connection.execute(
            sa.select(sa.func.count()).where(position >= first, position <= last)
        ).scalar_one()
        if count == last - first + 1:
            return None
        return int(
            connection.execute(
                sa.text(
                    "SELECT p FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS p "
                    f'WHERE NOT EXISTS (SELECT 1 FROM "{self.schema}".events e WHERE e.position = p) LIMIT 1'
                ),
                {"first": first, "last": last},
            ).scalar_one()
        )

    def subscribe(
        self, from_position: int = 1, event_filter: EventFilter = ALL_EVENTS, timeout: float | None = 1.0
    ) -> PostgresSubscription:
        return PostgresSubscription(self, from_position, event_filter, timeout)

    # ------------------------------------------------------------------ snapshots

    def save_snapshot(self, snapshot: Snapshot) -> None:
        if self.read_only:
            raise EventStoreError(f"{self._safe_url()} is open read-only: snapshots are not saved")
        upsert = pg_insert(self.snapshots).values(
            stream=snapshot.stream,
            version=snapshot.version,
            schema_version=snapshot.schema_version,
            checksum=crc32c.crc32c(snapshot.data),
            data=snapshot.data,
        )
        excluded = upsert.excluded
        with self._engine.begin() as connection:
            connection.execute(
                upsert.on_conflict_do_update(
                    index_elements=["stream"],
                    set_={
                        "version": excluded.version,
                        "schema_version": excluded.schema_version,
                        "checksum": excluded.checksum,
                        "data": excluded.data,
                    },
                )
            )

    def load_snapshot(self, stream: str, schema_version: int) -> Snapshot | None:
        columns = self.snapshots.c
        with self._engine.connect() as connection:
            row = connection.execute(
                sa.select(columns.version, columns.schema_version, columns.checksum, columns.data).where(
                    columns.stream == stream
                )
            ).first()
        if row is None:
            return None
        version, stored_schema, checksum, data = row
        if (
            stored_schema != schema_version
            or crc32c.crc32c(data) != checksum
            or version > self.stream_version(stream)
        ):
            if self.read_only:
                return None
            with self._engine.begin() as connection:
                connection.execute(sa.delete(self.snapshots).where(columns.stream == stream))
            return None
        return Snapshot(stream, int(version), int(stored_schema), bytes(data))

    def close(self) -> None:
        self._engine.dispose()
        with self._append_lock:
            self._drop_appender()

    def drop(self) -> None:
        """Remove this store's schema and everything in it (tests, benchmarks)."""
        with self._engine.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _contiguous(rows: Sequence[Any], first: int, last: int) -> bool:
    """Whether an unfiltered page of (position, data) rows holds exactly the positions first..last."""
    return len(rows) == last - first + 1 and (not rows or (rows[0][0] == first and rows[-1][0] == last))


class PostgresSubscription(PollingSubscription):
    """Live by LISTEN/NOTIFY: every append notifies the store's channel at commit, so a waiting subscriber
    wakes when there is something to read instead of polling. LISTEN is issued before the first read, so a
    notification sent between a read and the next wait is already queued and is never missed; a wait still
    ends after MAX_WAIT_S so that appends by a writer that does not notify are seen too."""

    def __init__(
        self, store: PostgresStore, from_position: int, event_filter: EventFilter, timeout: float | None
    ) -> None:
        super().__init__(from_position, event_filter, timeout)
        self._store = store
        self._listener = psycopg.connect(store._plain_url, autocommit=True)
        self._listener.execute(f'LISTEN "{store.channel}"')

    def _fetch(self, max_events: int) -> list[pb.EventEnvelope] | None:
        store = self._store
        with store._engine.connect() as connection:
            head = store._head(connection)
            if head < self._next:
                return None
            rows = connection.execute(store._query(self._next, head, self._filter, max_events)).all()
        self._next = rows[-1][0] + 1 if len(rows) == max_events else head + 1
        return [_parse(data) for _, data in rows]

    def _wait(self, remaining: float | None) -> None:
        wait = MAX_WAIT_S if remaining is None else min(MAX_WAIT_S, remaining)
        for _ in self._listener.notifies(timeout=wait, stop_after=1):
            pass

    def close(self) -> None:
        super().close()
        self._listener.close()
