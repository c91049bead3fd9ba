"""PostgreSQL backend under concurrent writer processes: no subscriber may ever skip an event."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from eventstore import EventStoreError, StoreUnavailable, open_store, wal
from eventstore.api import ALL_EVENTS, NO_STREAM, CorruptLogError, EventFilter, WrongExpectedVersion, exact
from eventstore.postgres import PostgresStore
from eventstore.postgres import subscription as postgres_subscription
from eventstore.verify import verify_postgres
from leyline import decode_payload, new_envelope, pb

ROOT = Path(__file__).resolve().parents[2]
WRITERS = 4
BATCHES = 40

pytestmark = pytest.mark.postgres


def test_four_writer_processes_and_a_live_subscriber(postgres_server: str) -> None:
    schema = f"s_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(postgres_server, schema=schema)
    subscription = store.subscribe(timeout=0.05)
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.eventstore.writer_child",
                postgres_server,
                f"w{n}",
                str(BATCHES),
                f"schema={schema}",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(WRITERS)
    ]
    seen = []
    deadline = time.monotonic() + 300
    while any(writer.poll() is None for writer in writers) and time.monotonic() < deadline:
        seen.extend(subscription.poll(max_events=7))  # small pages while writers commit concurrently
    acks = 0
    for writer in writers:
        stdout, _ = writer.communicate(timeout=60)
        assert writer.returncode == 0
        acks += stdout.count("ack")
    assert acks == WRITERS * BATCHES
    seen.extend(event for event in subscription)
    head = store.head_position()
    assert [e.global_position for e in seen] == list(range(1, head + 1)), (
        "every position exactly once, in order"
    )
    batches: dict[tuple[str, str, int], list[int]] = {}
    for envelope in seen:
        name, batch, _, size = decode_payload(envelope).run_id.split("/")  # type: ignore[attr-defined]
        batches.setdefault((name, batch, int(size)), []).append(envelope.global_position)
    assert len(batches) == WRITERS * BATCHES
    for (_, _, size), positions in batches.items():
        assert positions == list(range(positions[0], positions[0] + size)), "a batch is whole and contiguous"
    assert verify_postgres(postgres_server, schema=schema).ok
    store.drop()
    store.close()


def test_url_that_does_not_answer() -> None:
    with pytest.raises(StoreUnavailable, match="does not answer"):
        open_store("postgresql://postgres@127.0.0.1:1/esper", connect_timeout=2)


def test_opening_without_create_needs_an_existing_store(postgres_server: str) -> None:
    with pytest.raises(StoreUnavailable, match="no event store"):
        open_store(postgres_server, create=False, schema=f"s_{uuid.uuid4().hex[:12]}")


def test_verify_names_a_missing_position(postgres_server: str) -> None:
    import sqlalchemy as sa

    from tests.eventstore.conftest import make_event

    schema = f"s_{uuid.uuid4().hex[:12]}"
    with PostgresStore(postgres_server, schema=schema) as store:
        store.append([make_event("run-a") for _ in range(5)])
        with store.engine.begin() as connection:
            connection.execute(sa.delete(store.tables.events).where(store.tables.events.c.position == 3))
        report = verify_postgres(postgres_server, schema=schema)
        assert report.problem is not None and report.problem.position == 3
        store.drop()


def test_stored_records_are_stamped_byte_for_byte_as_the_file_store_stamps_them(postgres_server: str) -> None:
    """The server-side append stamps stream version and position with its own varint: it must agree with
    eventstore.wal.stamp for one- to five-byte varints."""
    schema = f"s_{uuid.uuid4().hex[:12]}"
    with PostgresStore(postgres_server, schema=schema) as store:
        with store.engine.connect() as connection:
            for value in (
                1,
                127,
                128,
                300,
                16_383,
                16_384,
                2_097_151,
                2_097_152,
                2**28 - 1,
                2**28,
                2**34 + 5,
            ):
                encoded = connection.execute(
                    sa.text(f'SELECT "{schema}".varint(:n)'), {"n": value}
                ).scalar_one()
                assert bytes(encoded) == wal.varint(value)
        events = [
            new_envelope("RunStarted", f"run-r{index % 3}", pb.RunStarted(run_id="r")) for index in range(200)
        ]
        store.append(events)
        with store.engine.connect() as connection:
            rows = connection.execute(
                sa.select(
                    store.tables.events.c.position,
                    store.tables.events.c.stream_version,
                    store.tables.events.c.data,
                )
            )
            stored = {position: (version, bytes(data)) for position, version, data in rows}
        for position, event in enumerate(events, start=1):
            version, data = stored[position]
            assert data == wal.stamp(event.SerializeToString(), version, position)
        store.drop()


def test_an_append_probes_the_log_by_index_and_never_scans_it(postgres_server: str) -> None:
    """Appends to a log that grew after PL/pgSQL cached its plans (and before any ANALYZE) read the events
    table only through its indexes: a sequential scan would make every append cost O(log size)."""
    schema = f"s_{uuid.uuid4().hex[:12]}"
    with PostgresStore(postgres_server, schema=schema) as store:
        for _ in range(30):  # the plans are made while the table is small
            store.append(
                [new_envelope("RunStarted", f"run-r{n % 7}", pb.RunStarted(run_id="r")) for n in range(100)]
            )
        appender = store.appender.connection
        assert appender is not None

        def sequential_scans() -> int:
            appender.execute("SELECT pg_stat_force_next_flush()")  # this backend's counts, at its next idle
            row = appender.execute(
                "SELECT seq_scan FROM pg_stat_user_tables WHERE schemaname = %s AND relname = 'events'",
                (schema,),
            ).fetchone()
            assert row is not None
            return int(row[0])

        before = sequential_scans()
        retried = new_envelope("RunStarted", "run-r1", pb.RunStarted(run_id="r"))
        first = store.append([retried], {"run-r1": exact(store.stream_version("run-r1"))})
        for _ in range(10):  # a retried event among new ones, in one batch, and within it
            fresh = [
                new_envelope("RunStarted", f"run-r{n % 7}", pb.RunStarted(run_id="r")) for n in range(10)
            ]
            positions = store.append([retried, *fresh, fresh[0]])
            assert positions[0] == first[0] and positions[-1] == positions[1]
            assert positions[1:-1] == list(range(positions[1], positions[1] + 10))
        assert sequential_scans() == before
        store.drop()


def test_a_waiting_subscriber_is_woken_by_the_append_not_by_polling(
    postgres_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_subscription, "MAX_WAIT_S", 3600.0)  # only a notification can end the wait
    schema = f"s_{uuid.uuid4().hex[:12]}"
    with PostgresStore(postgres_server, schema=schema) as store:
        subscription = store.subscribe(timeout=None)
        waiting = threading.Event()
        original_wait = subscription._wait

        def wait(remaining: float | None) -> None:
            waiting.set()
            original_wait(remaining)

        subscription._wait = wait  # type: ignore[method-assign]
        appended = new_envelope("RunStarted", "run-live", pb.RunStarted(run_id="live"))
        writer = threading.Thread(target=lambda: waiting.wait(60) and store.append([appended]))
        writer.start()
        received = subscription.poll()
        writer.join()
        assert [event.event_id for event in received] == [appended.event_id]
        subscription.close()
        store.drop()


def test_an_expected_version_conflict_names_the_stream_and_its_actual_version(postgres_server: str) -> None:
    schema = f"s_{uuid.uuid4().hex[:12]}"
    with PostgresStore(postgres_server, schema=schema) as store:
        first = new_envelope("RunStarted", "run-a", pb.RunStarted(run_id="a"))
        store.append([first], expected={"run-a": NO_STREAM})
        second = new_envelope("RunStarted", "run-a", pb.RunStarted(run_id="a"))
        with pytest.raises(WrongExpectedVersion, match="run-a") as raised:
            store.append([second], expected={"run-a": NO_STREAM})
        assert raised.value.actual == 1
        assert store.append([second], expected={"run-a": exact(1)}) == [2]
        assert store.append([first, second], expected={"run-a": NO_STREAM}) == [1, 2], "known ids: no check"
        store.drop()


@pytest.mark.parametrize(
    "event_filter",
    [
        ALL_EVENTS,
        EventFilter(streams=frozenset({"run-late"})),
        EventFilter(event_types=frozenset({"RunStarted"})),
    ],
    ids=["all", "a-stream-after-the-hole", "by-type"],
)
def test_reads_refuse_to_pass_a_missing_position(postgres_server: str, event_filter: EventFilter) -> None:
    """A deleted row is a hole no read may step over silently, filtered or not (as the file store)."""
    schema = f"s_{uuid.uuid4().hex[:12]}"
    with PostgresStore(postgres_server, schema=schema) as store:
        try:
            store.append(
                [new_envelope("RunStarted", f"run-{n}", pb.RunStarted(run_id=str(n))) for n in range(6)]
            )
            store.append([new_envelope("RunStarted", "run-late", pb.RunStarted(run_id="late"))])
            with store.engine.begin() as connection:
                connection.execute(sa.text(f'DELETE FROM "{schema}".events WHERE position = 4'))
            assert [e.global_position for e in store.read_all(to_position=3, event_filter=event_filter)] in (
                [1, 2, 3],
                [],
            )
            with pytest.raises(CorruptLogError) as raised:
                list(store.read_all(event_filter=event_filter))
            assert raised.value.position == 4 and raised.value.segment == f"{schema}.events"
        finally:
            store.drop()


def test_replay_on_postgres_stops_at_a_missing_position(
    capsys: pytest.CaptureFixture[str], postgres_server: str
) -> None:
    from ops.cli import main

    schema = "esper"
    with PostgresStore(postgres_server, schema=schema) as store:
        try:
            store.append(
                [new_envelope("RunStarted", f"run-{n}", pb.RunStarted(run_id=str(n))) for n in range(5)]
            )
            with store.engine.begin() as connection:
                connection.execute(sa.text(f'DELETE FROM "{schema}".events WHERE position = 2'))
            assert main(["replay", "--store", postgres_server]) == 1
            captured = capsys.readouterr()
            assert [json.loads(line)["position"] for line in captured.out.splitlines()] == [1]
            assert captured.err.count("\n") == 1 and "global position 2" in captured.err
        finally:
            store.drop()


def test_a_read_only_postgres_store_creates_and_appends_nothing(postgres_server: str) -> None:
    schema = f"s_{uuid.uuid4().hex[:12]}"
    with pytest.raises(StoreUnavailable):
        open_store(postgres_server, schema=schema, read_only=True)  # no tables are created for a reader
    with PostgresStore(postgres_server, schema=schema) as writer:
        try:
            writer.append([new_envelope("RunStarted", "run-1", pb.RunStarted(run_id="1"))])
            with PostgresStore(postgres_server, schema=schema, read_only=True) as reader:
                assert [e.global_position for e in reader.read_all()] == [1]
                with pytest.raises(EventStoreError, match="read-only"):
                    reader.append([new_envelope("RunStarted", "run-1", pb.RunStarted(run_id="2"))])
            assert writer.head_position() == 1
        finally:
            writer.drop()
