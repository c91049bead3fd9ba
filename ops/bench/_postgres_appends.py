"""Concurrent appends to the PostgreSQL event store, beside the `eventsourcing` library's PostgreSQL
application recorder (`esper bench eventstore --backend postgres`).

Both sides get the same work: 1, 2 and 4 writer processes, each appending batches of 1, 10 or 100 events
(~330-byte EpochCompleted envelopes; the baseline stores the same payload bytes as the state of one
aggregate's events, one new aggregate per batch) to one shared store for a fixed time after a common start.
Both give gap-free positions in commit order (our head row lock; its table lock on the notification ids),
and both commit once per batch. The figure is the events committed per second by all writers together;
the two sides alternate configuration by configuration on the same server.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
import uuid
from collections.abc import Callable
from multiprocessing.synchronize import Event
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from eventstore.postgres import PostgresStore, libpq_url
from ops.bench import DEFAULT_POSTGRES_URL, POSTGRES_URL_ENV, BenchOptions, Result
from ops.bench.eventstore import make_events

BASELINE = "eventsourcing_postgres"
WRITERS = (1, 2, 4)
BATCHES = (1, 10, 100)
EVENTSOURCING_TABLE = "stored_events"
TOPIC = "ops.bench.eventstore:EpochCompleted"
POOL_CAP = 60_000  # events built before the clock starts; a faster writer builds more on the way


def run(options: BenchOptions) -> list[Result]:
    url = os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL)
    seconds = 0.5 if options.quick else 2.0
    tag = uuid.uuid4().hex[:10]
    ours, theirs = f"bench_esper_{tag}", f"bench_es_{tag}"
    _create_stores(url, ours, theirs)
    results: list[Result] = []
    try:
        for writers in WRITERS:
            for batch in BATCHES:
                options.progress(f"{writers} writer(s) x batch {batch}: esper, then eventsourcing")
                esper = _concurrent_rate(_esper_writer, url, ours, writers, batch, seconds)
                baseline = _concurrent_rate(_eventsourcing_writer, url, theirs, writers, batch, seconds)
                results.append(_result(writers, batch, esper, baseline))
    finally:
        _drop_schemas(url, ours, theirs)
    return results


def _result(writers: int, batch: int, esper: float, baseline: float) -> Result:
    ratio = esper / baseline
    target, met = None, None
    if batch == 10:
        target, met = ">= 2x baseline", ratio >= 2.0
        if writers == 4:
            target, met = ">= 2x baseline and >= 5000 events/s", ratio >= 2.0 and esper >= 5000
    return Result(
        f"pg_{writers}writers_batch{batch}_eps",
        esper,
        "events/s",
        baseline_name=BASELINE,
        baseline=baseline,
        ratio=ratio,
        target=target,
        met=met,
    )


def _concurrent_rate(
    writer: Callable[..., None], url: str, schema: str, writers: int, batch: int, seconds: float
) -> float:
    """Events per second committed by `writers` processes appending batches for `seconds` from one start."""
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    counts = context.Queue()
    processes = [
        context.Process(target=writer, args=(url, schema, batch, seconds, start, counts))
        for _ in range(writers)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        if _next_message(counts, processes) != "ready":
            raise RuntimeError("a writer process reported something other than ready")
    start.set()
    reports = [_next_message(counts, processes) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    events = sum(count for count, _ in reports)
    elapsed = max(elapsed for _, elapsed in reports)
    return float(events / elapsed)


def _next_message(counts: Any, processes: list[Any]) -> Any:
    """The next message from the writers; a writer that died makes the bench fail at once, not hang."""
    while True:
        try:
            return counts.get(timeout=0.5)
        except queue.Empty:
            dead = [process for process in processes if process.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"a writer process failed with exit code {dead[0].exitcode}") from None


def _timed_loop(append: Callable[[int], None], batch: int, seconds: float, start: Event, counts: Any) -> None:
    """Report ready, wait for the common start, call append(batch index) until `seconds` have passed."""
    counts.put("ready")
    start.wait()
    began = time.perf_counter()
    calls = 0
    while time.perf_counter() - began < seconds:
        append(calls)
        calls += 1
    counts.put((calls * batch, time.perf_counter() - began))


def _esper_writer(url: str, schema: str, batch: int, seconds: float, start: Event, counts: Any) -> None:
    store = PostgresStore(url, schema=schema)
    pool = make_events(min(batch * 4000, POOL_CAP), streams=50)
    groups = [pool[offset : offset + batch] for offset in range(0, len(pool), batch)]

    def append(index: int) -> None:
        store.append(groups[index] if index < len(groups) else make_events(batch, streams=50))

    _timed_loop(append, batch, seconds, start, counts)
    store.close()


def _eventsourcing_writer(
    url: str, schema: str, batch: int, seconds: float, start: Event, counts: Any
) -> None:
    from eventsourcing.persistence import StoredEvent
    from eventsourcing.postgres import PostgresApplicationRecorder

    datastore = _eventsourcing_datastore(url, schema)
    recorder = PostgresApplicationRecorder(datastore, events_table_name=EVENTSOURCING_TABLE)
    state = make_events(1)[0].payload

    def append(_: int) -> None:
        aggregate = uuid.uuid4()
        recorder.insert_events(
            [StoredEvent(aggregate, version, TOPIC, state) for version in range(1, batch + 1)]
        )

    _timed_loop(append, batch, seconds, start, counts)
    datastore.close()


def _create_stores(url: str, ours: str, theirs: str) -> None:
    """Both stores' tables, created once before any writer starts (concurrent creation would race)."""
    from eventsourcing.postgres import PostgresApplicationRecorder

    PostgresStore(url, schema=ours).close()
    with psycopg.connect(libpq_url(url), autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{theirs}"')
    datastore = _eventsourcing_datastore(url, theirs)
    PostgresApplicationRecorder(datastore, events_table_name=EVENTSOURCING_TABLE).create_table()
    datastore.close()


def _eventsourcing_datastore(url: str, schema: str) -> Any:
    from eventsourcing.postgres import PostgresDatastore

    parsed = make_url(url)
    return PostgresDatastore(
        parsed.database or "postgres",
        parsed.host or "127.0.0.1",
        parsed.port or 5432,
        parsed.username or "postgres",
        parsed.password or "",
        schema=schema,
    )


def _drop_schemas(url: str, *schemas: str) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as connection:
        for schema in schemas:
            connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
