"""PostgresStore: the EventStore protocol on PostgreSQL (see eventstore.postgres for how positions stay
gap-free in commit order): opening and creating the store, reads, snapshots."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence

import crc32c
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import make_url

from eventstore import metrics
from eventstore.api import (
    ALL_EVENTS,
    EventFilter,
    EventStoreError,
    Expected,
    Snapshot,
    StoreUnavailable,
)
from eventstore.postgres import reads
from eventstore.postgres.append_sql import install_append_function
from eventstore.postgres.appender import BACKEND, Appender
from eventstore.postgres.subscription import PostgresSubscription
from eventstore.postgres.tables import define_tables, engine_url, libpq_url
from leyline import pb

__all__ = ["BACKEND", "PostgresStore"]


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
        self.tables = define_tables(schema)
        self.url = engine_url(url)
        self._display = make_url(url).render_as_string(hide_password=True)
        self.schema = schema
        self.engine = sa.create_engine(self.url, connect_args={"connect_timeout": connect_timeout})
        self.plain_url = libpq_url(url)
        self.appender = Appender(self.plain_url, schema, connect_timeout, self._display)
        self.channel = f"{schema}_appended"
        started = time.perf_counter()
        try:
            with self.engine.begin() as connection:
                if create:
                    connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
                    self.tables.metadata.create_all(connection)
                    connection.execute(
                        pg_insert(self.tables.head)
                        .values(id=1, position=0)
                        .on_conflict_do_nothing(index_elements=["id"])
                    )
                    install_append_function(connection, schema)
                elif connection.execute(sa.select(self.tables.head.c.position)).first() is None:
                    raise StoreUnavailable(f"{self._safe_url()}: no event store in schema {schema!r}")
        except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
            self.engine.dispose()
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            if isinstance(exc, sa.exc.OperationalError):
                raise StoreUnavailable(f"{self._safe_url()} does not answer: {reason}") from None
            raise StoreUnavailable(
                f"{self._safe_url()}: no event store in schema {schema!r} ({reason})"
            ) from None
        metrics.RECOVERY_DURATION.observe(time.perf_counter() - started)

    def _safe_url(self) -> str:
        return self._display

    def append(
        self, events: Sequence[pb.EventEnvelope], expected: Mapping[str, Expected] | None = None
    ) -> list[int]:
        if self.read_only:
            raise EventStoreError(
                f"{self._safe_url()} is open read-only: open it without read_only to append"
            )
        return self.appender.append(events, expected)

    # ------------------------------------------------------------------ reading

    def head_position(self) -> int:
        with self.engine.connect() as connection:
            return reads.head(self.tables, connection)

    def stream_version(self, stream: str) -> int:
        events = self.tables.events
        with self.engine.connect() as connection:
            version = connection.execute(
                sa.select(sa.func.max(events.c.stream_version)).where(events.c.stream == stream)
            ).scalar_one_or_none()
            reads.durable(connection)
        return int(version or 0)

    def read_stream(
        self, stream: str, from_version: int = 1, limit: int | None = None
    ) -> list[pb.EventEnvelope]:
        events = self.tables.events
        query = (
            sa.select(events.c.data)
            .where(events.c.stream == stream, events.c.stream_version >= from_version)
            .order_by(events.c.stream_version)
        )
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
            reads.durable(connection)
        return [reads.parse(data) for (data,) in rows]

    def read_all(
        self,
        from_position: int = 1,
        event_filter: EventFilter = ALL_EVENTS,
        limit: int | None = None,
        to_position: int | None = None,
    ) -> Iterable[pb.EventEnvelope]:
        with self.engine.connect() as connection:
            head = reads.head(self.tables, connection)
        last = head if to_position is None else min(head, to_position)
        return reads.pages(self.engine, self.tables, from_position, last, event_filter, limit)

    def subscribe(
        self, from_position: int = 1, event_filter: EventFilter = ALL_EVENTS, timeout: float | None = 1.0
    ) -> PostgresSubscription:
        return PostgresSubscription(self, from_position, event_filter, timeout)

    # ------------------------------------------------------------------ snapshots

    def save_snapshot(self, snapshot: Snapshot) -> None:
        if self.read_only:
            raise EventStoreError(f"{self._safe_url()} is open read-only: snapshots are not saved")
        upsert = pg_insert(self.tables.snapshots).values(
            stream=snapshot.stream,
            version=snapshot.version,
            schema_version=snapshot.schema_version,
            checksum=crc32c.crc32c(snapshot.data),
            data=snapshot.data,
        )
        excluded = upsert.excluded
        with self.engine.begin() as connection:
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
        snapshots = self.tables.snapshots
        columns = snapshots.c
        with self.engine.connect() as connection:
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
            with self.engine.begin() as connection:
                connection.execute(sa.delete(snapshots).where(columns.stream == stream))
            return None
        return Snapshot(stream, int(version), int(stored_schema), bytes(data))

    def close(self) -> None:
        self.engine.dispose()
        self.appender.close_guarded()

    def drop(self) -> None:
        """Remove this store's schema and everything in it (tests, benchmarks)."""
        with self.engine.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
