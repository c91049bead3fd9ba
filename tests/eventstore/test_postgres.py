"""PostgreSQL backend under concurrent writer processes: no subscriber may ever skip an event."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from eventstore import StoreUnavailable, open_store, wal
from eventstore import postgres as postgres_module
from eventstore.api import NO_STREAM, WrongExpectedVersion, exact
from eventstore.postgres import PostgresStore
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
        with store._engine.begin() as connection:
            connection.execute(sa.delete(store.events).where(store.events.c.position == 3))
        report = verify_postgres(postgres_server, schema=schema)
        assert report.problem is not None and report.problem.position == 3
        store.drop()


def test_stored_records_are_stamped_byte_for_byte_as_the_file_store_stamps_them(postgres_server: str) -> None:
    """The server-side append stamps stream version and position with its own varint: it must agree with
    eventstore.wal.stamp for one- to five-byte varints."""
    schema = f"s_{uuid.uuid4().hex[:12]}"
    with PostgresStore(postgres_server, schema=schema) as store:
        with store._engine.connect() as connection:
            for value in (1, 127, 128, 300, 16_383, 16_384, 2_097_152, 2**34 + 5):
                encoded = connection.execute(
                    sa.text(f'SELECT "{schema}".varint(:n)'), {"n": value}
                ).scalar_one()
                assert bytes(encoded) == wal.varint(value)
        events = [
            new_envelope("RunStarted", f"run-r{index % 3}", pb.RunStarted(run_id="r")) for index in range(200)
        ]
        store.append(events)
        with store._engine.connect() as connection:
            rows = connection.execute(
                sa.select(store.events.c.position, store.events.c.stream_version, store.events.c.data)
            )
            stored = {position: (version, bytes(data)) for position, version, data in rows}
        for position, event in enumerate(events, start=1):
            version, data = stored[position]
            assert data == wal.stamp(event.SerializeToString(), version, position)
        store.drop()


def test_a_waiting_subscriber_is_woken_by_the_append_not_by_polling(
    postgres_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_module, "MAX_WAIT_S", 3600.0)  # only a notification can end the wait
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
