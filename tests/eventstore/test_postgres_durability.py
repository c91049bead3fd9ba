"""PostgreSQL appends and reads are durable when they return, also where several appenders are connected
and an append lets the next one take the lock before its own commit is flushed
(eventstore.postgres.append_sql): the WAL itself is read back with pg_walinspect."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from eventstore.postgres import PostgresStore
from leyline import pb
from tests.eventstore.conftest import make_events

pytestmark = pytest.mark.postgres


@pytest.fixture
def store(postgres_server: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(postgres_server, schema=f"d_{uuid.uuid4().hex[:12]}")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def observer(postgres_server: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(postgres_server, autocommit=True) as connection:
        connection.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        yield connection


def flushed_records(observer: psycopg.Connection[tuple[object, ...]], since: str) -> list[tuple[object, ...]]:
    """(resource manager, record type, xid, end LSN, description) of the WAL records flushed since `since`."""
    ahead = observer.execute("SELECT pg_current_wal_flush_lsn() > %s::pg_lsn", (since,)).fetchone()
    if ahead != (True,):
        return []  # nothing flushed since (pg_walinspect refuses a range that starts past the flush)
    return observer.execute(
        "SELECT resource_manager, record_type, xid::text, end_lsn, description "
        "FROM pg_get_wal_records_info(%s, pg_current_wal_flush_lsn()) ORDER BY start_lsn",
        (since,),
    ).fetchall()


def records_after_commit(
    store: PostgresStore, observer: psycopg.Connection[tuple[object, ...]], stream: str
) -> list[tuple[object, ...]]:
    """Append 3 events; the WAL records flushed after their transaction's commit record, which must be
    flushed itself."""
    since = observer.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
    assert since is not None
    positions = store.append(make_events(stream, 3))
    records = flushed_records(observer, str(since[0]))
    schema = store.tables.metadata.schema
    xid = observer.execute(
        f'SELECT xmin::text FROM "{schema}".events WHERE position = %s', (positions[0],)
    ).fetchone()
    assert xid is not None
    commits = [index for index, record in enumerate(records) if record[1] == "COMMIT" and record[2] == xid[0]]
    assert commits, "the events' commit record is not flushed although the append returned"
    return records[commits[0] + 1 :]


def flush_messages(records: list[tuple[object, ...]]) -> int:
    return sum(record[0] == "LogicalMessage" and "esper.flush" in str(record[4]) for record in records)


def test_with_another_appender_connected_an_append_returns_once_its_commit_is_flushed(
    store: PostgresStore, postgres_server: str, observer: psycopg.Connection[tuple[object, ...]]
) -> None:
    store.append(make_events("warm", 1))  # installs the procedure
    other = PostgresStore(postgres_server, schema=store.tables.metadata.schema)
    try:
        other.append(make_events("other", 1))  # its connection announces a second appender
        after = records_after_commit(store, observer, "shared")
    finally:
        other.close()
    # the events' transaction committed without waiting for the flush (releasing the lock); a second
    # transaction of the same call flushed it before the append returned
    assert flush_messages(after) == 1


def test_a_lone_appender_commits_in_one_durable_transaction(
    store: PostgresStore, observer: psycopg.Connection[tuple[object, ...]]
) -> None:
    store.append(make_events("warm", 1))
    after = records_after_commit(store, observer, "alone")
    assert flush_messages(after) == 0


READS: dict[str, Callable[[PostgresStore], object]] = {
    "head_position": lambda store: store.head_position(),
    "read_all": lambda store: list(store.read_all()),
    "read_stream": lambda store: store.read_stream("durable"),
    "stream_version": lambda store: store.stream_version("durable"),
    "subscription": lambda store: poll_once(store),
}


def poll_once(store: PostgresStore) -> list[pb.EventEnvelope]:
    subscription = store.subscribe(timeout=0)
    try:
        return subscription.poll()
    finally:
        subscription.close()


@pytest.mark.parametrize("read", sorted(READS))
def test_a_read_returns_only_what_is_flushed(
    store: PostgresStore, observer: psycopg.Connection[tuple[object, ...]], read: str
) -> None:
    """A commit not flushed yet (committed here with synchronous_commit off, as an append's events are
    where several appenders are connected) is flushed before a read returns: the WAL's flush point passes
    what was written before."""
    store.append(make_events("durable", 2))
    schema = store.tables.metadata.schema
    observer.execute("SET synchronous_commit = off")
    observer.execute(f'UPDATE "{schema}".head SET position = position WHERE id = 1')
    written = observer.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
    assert written is not None
    READS[read](store)
    flushed = observer.execute("SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", written).fetchone()
    assert flushed == (True,)
