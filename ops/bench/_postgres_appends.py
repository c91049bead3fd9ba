"""Concurrent appends to the PostgreSQL event store, beside the `eventsourcing` library's PostgreSQL
application recorder (`esper bench eventstore --backend postgres`).

Both sides get the same work: 1, 2 and 4 writer processes, each appending batches of 1, 10 or 100 events
to one shared store for a fixed time after a common start. A batch is one new stream on our side and one
new aggregate on the baseline's (its events numbered 1..batch), each event the same EpochCompleted
(~330 bytes: our envelope; the baseline stores its payload bytes as the state, with a topic). Both give
gap-free positions in commit order (our ordering lock, held through the commit's flush only by a lone
appender: eventstore.postgres.append_sql; its table lock on the notification ids, held through it); both
durable (an append returns after its commit is flushed), one commit of its events per batch. Each
writer has one connection of its own, opened (and warmed with WARM_UP appends) before the clock starts.
The figure is the events committed per second by all writers together, the median of ROUNDS rounds; the
two sides alternate which goes first, configuration by configuration, on the same server.

Beside each rate, `cpu_us_per_event` in the result's note: the writers' own CPU time (client) and, when
the server runs on this machine, their server processes' CPU time (server, from /proc), per event: what
the rate costs, less sensitive to a loaded machine than the wall clock. `pg_commit_floor_per_s` is one
writer committing a one-row insert per round trip in the same rounds: the rate no durable append of one
round trip and one commit each can pass: `1 / floor` is what one writer pays per batch on either side,
so no side's writer can reach `floor x batch` events/s.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import statistics
import time
import uuid
from collections.abc import Callable
from multiprocessing.synchronize import Event
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from eventstore.postgres import PostgresStore, libpq_url
from leyline import pb
from ops.bench import DEFAULT_POSTGRES_URL, POSTGRES_URL_ENV, BenchOptions, Result
from ops.bench.eventstore import make_events

BASELINE = "eventsourcing_postgres"
WRITERS = (1, 2, 4)
BATCHES = (1, 10, 100)
EVENTSOURCING_TABLE = "stored_events"
TOPIC = "ops.bench.eventstore:EpochCompleted"
POOL_CAP = 60_000  # events built before the clock starts; a faster writer builds more on the way
ROUNDS = 2  # per configuration; the side that goes first alternates
WARM_UP = 3  # appends by each writer before the clock starts (connection, prepared statements)
Rate = tuple[float, float, float | None]  # events/s, client CPU µs/event, server CPU µs/event (or None)


def run(options: BenchOptions) -> list[Result]:
    url = os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL)
    seconds = 0.5 if options.quick else 2.0
    rounds = 1 if options.quick else ROUNDS
    tag = uuid.uuid4().hex[:10]
    ours, theirs = f"bench_esper_{tag}", f"bench_es_{tag}"
    _create_stores(url, ours, theirs)
    results: list[Result] = []
    floors: list[float] = []
    try:
        for writers in WRITERS:
            for batch in BATCHES:
                options.progress(f"{writers} writer(s) x batch {batch}: esper and eventsourcing, alternating")
                esper: list[Rate] = []
                baseline: list[Rate] = []
                for number in range(rounds):
                    sides = [(_esper_writer, ours, esper), (_eventsourcing_writer, theirs, baseline)]
                    for writer, schema, rates in sides[:: 1 if number % 2 == 0 else -1]:
                        rates.append(_concurrent_rate(writer, url, schema, writers, batch, seconds))
                    if writers == 1 and batch == 1:
                        floors.append(_concurrent_rate(_floor_writer, url, ours, 1, 1, seconds)[0])
                results.append(_result(writers, batch, esper, baseline))
    finally:
        _drop_schemas(url, ours, theirs)
    floor = statistics.median(floors)
    results.append(
        Result(
            "pg_commit_floor_per_s",
            floor,
            "commits/s",
            note="one writer, a one-row insert committed per round trip: what one durable commit costs",
        )
    )
    return results


def _result(writers: int, batch: int, esper: list[Rate], baseline: list[Rate]) -> Result:
    value, base = (statistics.median(rate for rate, _, _ in rates) for rates in (esper, baseline))
    ratio = value / base
    target, met = None, None
    if batch == 10:
        target, met = ">= 2x baseline", ratio >= 2.0
        if writers == 4:
            target, met = ">= 2x baseline and >= 5000 events/s", ratio >= 2.0 and value >= 5000
    return Result(
        f"pg_{writers}writers_batch{batch}_eps",
        value,
        "events/s",
        baseline_name=BASELINE,
        baseline=base,
        ratio=ratio,
        target=target,
        met=met,
        note=f"cpu_us_per_event esper {_cpu(esper)}, eventsourcing {_cpu(baseline)}",
    )


def _cpu(rates: list[Rate]) -> str:
    client = statistics.median(cpu for _, cpu, _ in rates)
    servers = [cpu for _, _, cpu in rates if cpu is not None]
    server = f"{statistics.median(servers):.1f}" if len(servers) == len(rates) else "n/a"
    return f"client {client:.1f} server {server}"


def _concurrent_rate(
    writer: Callable[..., None], url: str, schema: str, writers: int, batch: int, seconds: float
) -> Rate:
    """Events per second committed by `writers` processes appending batches for `seconds` from one start,
    and the CPU time they (and their server processes) spent per event."""
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
    events = sum(report[0] for report in reports)
    elapsed = max(report[1] for report in reports)
    client = sum(report[2] for report in reports) / events * 1e6
    servers = [report[3] for report in reports]
    server = None if None in servers else sum(servers) / events * 1e6
    return float(events / elapsed), client, server


def _next_message(counts: Any, processes: list[Any]) -> Any:
    """The next message from the writers; a writer that died makes the bench fail at once, not hang."""
    while True:
        try:
            return counts.get(timeout=0.5)
        except queue.Empty:
            dead = [process for process in processes if process.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"a writer process failed with exit code {dead[0].exitcode}") from None


def _timed_loop(
    append: Callable[[int], None], batch: int, seconds: float, start: Event, counts: Any, backend: int
) -> None:
    """Warm up, report ready, wait for the common start, call append(batch index) until `seconds` have
    passed; report the events, the time, this process's CPU time and its server process's (`backend`:
    its pid)."""
    for number in range(WARM_UP):
        append(-1 - number)
    counts.put("ready")
    start.wait()
    server = _process_cpu_s(backend)
    client = time.process_time()
    began = time.perf_counter()
    calls = 0
    while time.perf_counter() - began < seconds:
        append(calls)
        calls += 1
    elapsed = time.perf_counter() - began
    client = time.process_time() - client
    server_after = _process_cpu_s(backend)
    spent = None if server is None or server_after is None else server_after - server
    counts.put((calls * batch, elapsed, client, spent))


def _process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process of this machine (a local server's backend), else None."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _one_stream_batches(count: int, batch: int) -> list[list[pb.EventEnvelope]]:
    """`count` events in batches of `batch`, each batch one new stream (as each of the baseline's batches
    is one new aggregate)."""
    groups = []
    for _ in range(0, count, batch):
        stream = f"run-{uuid.uuid4().hex}"
        group = make_events(batch, streams=1)
        for event in group:
            event.stream = stream
        groups.append(group)
    return groups


def _esper_writer(url: str, schema: str, batch: int, seconds: float, start: Event, counts: Any) -> None:
    store = PostgresStore(url, schema=schema)
    groups = _one_stream_batches(min(batch * 4000, POOL_CAP), batch)
    warm_up = _one_stream_batches(batch * (WARM_UP + 1), batch)
    store.append(warm_up[0])  # opens the appender's connection, whose server process is measured
    assert store.appender.connection is not None
    backend = store.appender.connection.execute("SELECT pg_backend_pid()").fetchone()

    def append(index: int) -> None:
        if index < 0:
            store.append(warm_up[-index])
        else:
            store.append(groups[index] if index < len(groups) else _one_stream_batches(batch, batch)[0])

    _timed_loop(append, batch, seconds, start, counts, int(backend[0]) if backend else -1)
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

    with datastore.get_connection() as connection:  # the pool's one connection, which every append uses
        backend = connection.execute("SELECT pg_backend_pid() AS pid").fetchone()
    _timed_loop(append, batch, seconds, start, counts, int(backend["pid"]) if backend else -1)
    datastore.close()


def _floor_writer(url: str, schema: str, batch: int, seconds: float, start: Event, counts: Any) -> None:
    """A one-row insert committed per round trip (autocommit, prepared): the cost of one durable commit."""
    with psycopg.connect(libpq_url(url), autocommit=True) as connection:
        table = f'"{schema}".commit_floor'
        connection.execute(f"CREATE TABLE IF NOT EXISTS {table} (n bigint)")
        row = connection.execute("SELECT pg_backend_pid()").fetchone()
        insert = f"INSERT INTO {table} VALUES (%s)"

        def append(index: int) -> None:
            connection.execute(insert, (index,), prepare=True)

        _timed_loop(append, batch, seconds, start, counts, int(row[0]) if row else -1)


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
