"""The PostgreSQL backend (SQLAlchemy 2 Core over psycopg 3), with the same contract as the file store.

Gap-free, commit-ordered positions under concurrent writers (several processes or hosts): every append
transaction first locks the single row of `<schema>.head` (SELECT … FOR UPDATE), assigns positions from
it, inserts its events, advances it and commits. The row lock is held until commit, so the next writer
can only read the head after this one's events are committed: positions are handed out in commit order
and a reader that sees position N has also been able to see every position below N. (A sequence would
hand out ids at insert and make them visible at commit, letting a subscriber skip a late committer.)
Readers never block writers: they read the head row without locking, then events up to that head.

Tables (created when absent, in a schema of their own, `esper` by default): events (position primary key,
event_id unique for idempotency, stream + stream_version unique, category, event_type, the stamped
envelope bytes), streams (current version per stream), head, snapshots.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import crc32c
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection, make_url

from eventstore import metrics, wal
from eventstore.api import (
    ALL_EVENTS,
    EventFilter,
    EventStoreError,
    Expected,
    InvalidEvent,
    Snapshot,
    StoreUnavailable,
)
from eventstore.subscription import PollingSubscription
from leyline import category_of, pb

BACKEND = "postgres"
_parse = pb.EventEnvelope.FromString
PAGE = 2000
POLL_S = 0.02
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def engine_url(url: str) -> sa.URL:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


class PostgresStore:
    def __init__(
        self, url: str, *, create: bool = True, schema: str = "esper", connect_timeout: int = 5
    ) -> None:
        if not SCHEMA_NAME.match(schema):
            raise ValueError(f"schema name {schema!r} must be a lower-case SQL identifier")
        self.url = engine_url(url)
        self._display = make_url(url).render_as_string(hide_password=True)
        self.schema = schema
        self._engine = sa.create_engine(
            self.url, pool_pre_ping=True, connect_args={"connect_timeout": connect_timeout}
        )
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
        started = time.perf_counter()
        events = list(events)
        for event in events:
            if not event.event_id or not event.stream or not event.event_type:
                raise InvalidEvent("every event needs an event_id, an event_type and a stream")
        if not events:
            return []
        with self._engine.begin() as connection:
            head = connection.execute(
                sa.select(self.head.c.position).where(self.head.c.id == 1).with_for_update()
            ).scalar_one()
            ids = list({event.event_id for event in events})
            known: dict[str, int] = {
                event_id: position
                for event_id, position in connection.execute(
                    sa.select(self.events.c.event_id, self.events.c.position).where(
                        self.events.c.event_id.in_(ids)
                    )
                )
            }
            fresh: dict[str, pb.EventEnvelope] = {}  # event_id -> its first occurrence, not stored yet
            for event in events:
                if event.event_id not in known:
                    fresh.setdefault(event.event_id, event)
            duplicates = len(events) - len(fresh)
            if duplicates:
                metrics.DUPLICATES.labels(BACKEND).inc(duplicates)
            if not fresh:
                return [known[event.event_id] for event in events]
            names = list({event.stream for event in fresh.values()} | set(expected or {}))
            versions: dict[str, int] = {
                stream: version
                for stream, version in connection.execute(
                    sa.select(self.streams.c.stream, self.streams.c.version).where(
                        self.streams.c.stream.in_(names)
                    )
                )
            }
            for stream, expectation in (expected or {}).items():
                try:
                    expectation.check(stream, versions.get(stream, 0))
                except EventStoreError:
                    metrics.CONFLICTS.labels(BACKEND).inc()
                    raise
            rows = []
            position = head
            for event in fresh.values():
                position += 1
                version = versions.get(event.stream, 0) + 1
                versions[event.stream] = version
                known[event.event_id] = position
                rows.append(
                    {
                        "position": position,
                        "event_id": event.event_id,
                        "stream": event.stream,
                        "stream_version": version,
                        "category": category_of(event.stream),
                        "event_type": event.event_type,
                        "data": wal.stamp(event.SerializeToString(), version, position),
                    }
                )
            connection.execute(self.events.insert(), rows)
            touched = {row["stream"] for row in rows}
            upsert = pg_insert(self.streams)
            connection.execute(
                upsert.on_conflict_do_update(
                    index_elements=["stream"], set_={"version": upsert.excluded.version}
                ),
                [{"stream": stream, "version": versions[stream]} for stream in touched],
            )
            connection.execute(sa.update(self.head).where(self.head.c.id == 1).values(position=position))
        metrics.BYTES_WRITTEN.labels(BACKEND).inc(sum(len(row["data"]) for row in rows))
        metrics.FSYNC_BATCH_SIZE.observe(len(rows))
        metrics.APPEND_LATENCY.labels(BACKEND).observe(time.perf_counter() - started)
        return [known[event.event_id] for event in events]

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
        remaining = limit
        while first <= last and (remaining is None or remaining > 0):
            size = PAGE if remaining is None else min(PAGE, remaining)
            with self._engine.connect() as connection:
                rows = connection.execute(self._query(first, last, event_filter, size)).all()
            if not rows:
                return
            for _, data in rows:
                yield _parse(data)
            if remaining is not None:
                remaining -= len(rows)
            first = rows[-1][0] + 1

    def subscribe(
        self, from_position: int = 1, event_filter: EventFilter = ALL_EVENTS, timeout: float | None = 1.0
    ) -> PostgresSubscription:
        return PostgresSubscription(self, from_position, event_filter, timeout)

    # ------------------------------------------------------------------ snapshots

    def save_snapshot(self, snapshot: Snapshot) -> None:
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
            with self._engine.begin() as connection:
                connection.execute(sa.delete(self.snapshots).where(columns.stream == stream))
            return None
        return Snapshot(stream, int(version), int(stored_schema), bytes(data))

    def close(self) -> None:
        self._engine.dispose()

    def drop(self) -> None:
        """Remove this store's schema and everything in it (tests, benchmarks)."""
        with self._engine.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class PostgresSubscription(PollingSubscription):
    """Polls the head row every POLL_S seconds while live."""

    def __init__(
        self, store: PostgresStore, from_position: int, event_filter: EventFilter, timeout: float | None
    ) -> None:
        super().__init__(from_position, event_filter, timeout)
        self._store = store

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
        time.sleep(POLL_S if remaining is None else min(POLL_S, remaining))
