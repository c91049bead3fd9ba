"""PostgreSQL appends that wait for the ordering lock are numbered together, in one commit, by whichever
of them gets the lock, and each gets its own outcome: positions, a retried event's old position, or its
expected-version conflict."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Mapping

import psycopg
import pytest

from eventstore.api import ANY, NO_STREAM, Expected, InvalidEvent, WrongExpectedVersion, exact
from eventstore.postgres import PostgresStore, libpq_url
from eventstore.postgres.append_sql import LOCK_CLASS
from leyline import new_envelope, pb

pytestmark = pytest.mark.postgres


def _event(stream: str) -> pb.EventEnvelope:
    return new_envelope("RunStarted", stream, pb.RunStarted(run_id=stream))


def _count(connection: psycopg.Connection[tuple[int]], sql: str, *parameters: object) -> int:
    row = connection.execute(sql, parameters).fetchone()
    assert row is not None
    return int(row[0])


def _waiting_for_the_lock(connection: psycopg.Connection[tuple[int]]) -> int:
    return _count(
        connection,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = %s",
        LOCK_CLASS,
    )


def test_waiting_appends_share_one_commit_and_each_gets_its_own_outcome(postgres_server: str) -> None:
    schema = f"s_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(postgres_server, schema=schema)
    store.append([_event("run-a")], expected={"run-a": NO_STREAM})  # position 1, run-a at version 1
    b1, b2, b3, c1, d1 = (_event(stream) for stream in ("run-b", "run-b", "run-b", "run-a", "run-c"))
    appends: list[tuple[list[pb.EventEnvelope], Mapping[str, Expected]]] = [
        ([b1, b2], {"run-b": NO_STREAM}),
        ([c1], {"run-a": exact(5)}),  # run-a is at version 1: refused, and nothing of it written
        ([b1, b3], {"run-b": exact(2)}),  # b1 is the first append's: it keeps its position
        ([d1], {"run-c": ANY}),
    ]
    outcomes: list[list[int] | WrongExpectedVersion] = [[] for _ in appends]
    writers = [PostgresStore(postgres_server, schema=schema) for _ in appends]

    def append(number: int) -> None:
        events, expected = appends[number]
        try:
            outcomes[number] = writers[number].append(events, expected)
        except WrongExpectedVersion as conflict:
            outcomes[number] = conflict

    observer: psycopg.Connection[tuple[int]] = psycopg.connect(libpq_url(postgres_server), autocommit=True)
    holder = psycopg.connect(libpq_url(postgres_server))  # holds the ordering lock in an open transaction
    holder.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_CLASS, schema))
    threads = [threading.Thread(target=append, args=(number,)) for number in range(len(appends))]
    for number, thread in enumerate(threads):  # one after another: they are numbered in this order
        thread.start()
        while _waiting_for_the_lock(observer) < number + 1:
            time.sleep(0.01)
    assert _count(observer, f'SELECT count(*) FROM "{schema}".pending') == len(appends)
    holder.rollback()
    for thread in threads:
        thread.join()

    assert outcomes[0] == [2, 3]
    refused = outcomes[1]
    assert isinstance(refused, WrongExpectedVersion) and refused.actual == 1
    assert outcomes[2] == [2, 4]
    assert outcomes[3] == [5]
    assert store.head_position() == 5
    assert [event.event_id for event in store.read_all()] == [
        event.event_id for event in (store.read_stream("run-a")[0], b1, b2, b3, d1)
    ]
    assert store.stream_version("run-a") == 1 and store.stream_version("run-b") == 3
    assert (
        _count(observer, f'SELECT count(DISTINCT xmin::text) FROM "{schema}".events WHERE position > 1') == 1
    ), "the four waiting appends are committed together"
    assert _count(observer, f'SELECT count(*) FROM "{schema}".pending') == 0
    assert _count(observer, f'SELECT count(*) FROM "{schema}".outcomes') == 0
    for writer in writers:
        writer.close()
    holder.close()
    observer.close()
    store.drop()
    store.close()


def test_a_waiting_batch_the_server_cannot_store_fails_alone(postgres_server: str) -> None:
    """A stream name over the index's size limit fails its own append (InvalidEvent), and neither the batch
    numbered with it nor any later append: left pending, it would fail every later lock holder's commit."""
    schema = f"s_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(postgres_server, schema=schema)
    too_long = os.urandom(3000).hex()  # incompressible: over btree's 2,704-byte limit for one index row
    outcomes: dict[str, list[int] | Exception] = {}

    def append(name: str, stream: str) -> None:
        writer = PostgresStore(postgres_server, schema=schema)
        try:
            outcomes[name] = writer.append([_event(stream)])
        except InvalidEvent as refused:
            outcomes[name] = refused
        finally:
            writer.close()

    observer: psycopg.Connection[tuple[int]] = psycopg.connect(libpq_url(postgres_server), autocommit=True)
    holder = psycopg.connect(libpq_url(postgres_server))
    holder.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_CLASS, schema))
    threads = [
        threading.Thread(target=append, args=("too_long", too_long)),
        threading.Thread(target=append, args=("good", "run-good")),
    ]
    for number, thread in enumerate(threads):
        thread.start()
        while _waiting_for_the_lock(observer) < number + 1:
            time.sleep(0.01)
    holder.rollback()
    for thread in threads:
        thread.join()

    assert isinstance(outcomes["too_long"], InvalidEvent)
    assert "index row size" in str(outcomes["too_long"])
    assert outcomes["good"] == [1]
    assert store.append([_event("run-later")]) == [2]
    assert store.head_position() == 2
    assert _count(observer, f'SELECT count(*) FROM "{schema}".pending') == 0
    assert _count(observer, f'SELECT count(*) FROM "{schema}".outcomes') == 0
    with pytest.raises(InvalidEvent, match="index row size"):  # alone, it fails the same way
        store.append([_event(too_long)])
    assert store.head_position() == 2
    holder.close()
    observer.close()
    store.drop()
    store.close()
