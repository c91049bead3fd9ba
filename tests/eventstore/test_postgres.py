"""PostgreSQL backend under concurrent writer processes: no subscriber may ever skip an event."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from eventstore import StoreUnavailable, open_store
from eventstore.postgres import PostgresStore
from eventstore.verify import verify_postgres
from leyline import decode_payload

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
