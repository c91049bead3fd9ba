"""The runner on a real file store: catch-up, follow, rebuilds (in place, blue/green), versions, Postgres."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from eventstore import EventStore
from leyline import DEFAULT_REGISTRY, new_envelope, pb
from ops.bench._workload import realistic_log
from projections import (
    apply_batch,
    catch_up,
    default_projections,
    follow,
    open_db,
    rebuild,
    stale,
    status,
)
from tests.projections.helpers import dump, fresh_sqlite, postgres_database, to_store, unpositioned

EVENTS = 4000


@pytest.fixture(scope="module")
def log() -> list[pb.EventEnvelope]:
    return list(realistic_log(EVENTS, seed=5))


@pytest.fixture
def store(tmp_path: Path, log: list[pb.EventEnvelope]) -> EventStore:
    store = to_store(tmp_path / "log", log)
    yield store
    store.close()


@pytest.fixture(scope="module")
def expected(
    tmp_path_factory: pytest.TempPathFactory, log: list[pb.EventEnvelope]
) -> dict[str, list[tuple[object, ...]]]:
    engine = fresh_sqlite(tmp_path_factory.mktemp("expected"))
    apply_batch(engine, log)
    rows = dump(engine)
    engine.dispose()
    return rows


def test_catch_up_in_batches_equals_one_batch(tmp_path: Path, store: EventStore, expected: dict) -> None:
    engine = fresh_sqlite(tmp_path)
    reached: list[int] = []
    applied_before = (
        REGISTRY.get_sample_value("esper_projections_events_applied_total", {"projection": "runs"}) or 0
    )
    result = catch_up(store, engine, batch_size=700, progress=reached.append)
    applied = REGISTRY.get_sample_value("esper_projections_events_applied_total", {"projection": "runs"})
    assert applied == applied_before + result.applied["runs"] > applied_before
    assert REGISTRY.get_sample_value("esper_projections_lag_events", {"projection": "runs"}) == 0
    assert (
        REGISTRY.get_sample_value("esper_projections_checkpoint_position", {"projection": "runs"}) == EVENTS
    )
    assert set(result.positions.values()) == {store.head_position()}
    assert reached == sorted(reached) and len(reached) > 3
    assert sum(result.applied.values()) > 0
    assert dump(engine) == expected
    again = catch_up(store, engine)
    assert set(again.applied.values()) == {0}


def test_rebuilds_equal_incremental(tmp_path: Path, store: EventStore, expected: dict) -> None:
    engine = fresh_sqlite(tmp_path)
    catch_up(store, engine, batch_size=999)
    assert rebuild(store, engine, ["runs", "seed_lifecycle"]) == {"runs": EVENTS, "seed_lifecycle": EVENTS}
    assert dump(engine) == expected
    rebuild(store, engine, blue_green=True)
    assert dump(engine) == expected
    assert {entry.position for entry in status(engine)} == {EVENTS}


def test_only_projections_whose_code_changed_are_stale(
    tmp_path: Path, store: EventStore, expected: dict
) -> None:
    engine = fresh_sqlite(tmp_path)
    catch_up(store, engine)
    assert stale(engine) == []
    changed = [
        dataclasses.replace(projection, version=projection.version + 1)
        if projection.name == "alerts"
        else projection
        for projection in default_projections()
    ]
    assert stale(engine, changed) == ["alerts"]
    rebuild(store, engine, stale(engine, changed), projections=changed)
    assert stale(engine, changed) == []
    assert dump(engine) == expected


def test_follow_applies_live_appends(tmp_path: Path, log: list[pb.EventEnvelope], expected: dict) -> None:
    store = to_store(tmp_path / "log", log[:1000])
    engine = fresh_sqlite(tmp_path)
    stop = threading.Event()
    batches: list[int] = []
    follower = threading.Thread(
        target=follow,
        args=(store, engine, stop),
        kwargs={"batch_size": 300, "on_batch": lambda events: batches.append(events[-1].global_position)},
    )
    follower.start()
    try:
        for start in range(1000, EVENTS, 250):
            store.append(unpositioned(log[start : start + 250]))
        consumed = set().union(*(projection.event_types for projection in default_projections()))
        last = max(e.global_position for e in log if e.event_type in consumed)
        for _ in range(1200):
            if min(entry.position for entry in status(engine)) >= last:
                break
            time.sleep(0.05)
    finally:
        stop.set()
        follower.join()
        store.close()
    assert batches and batches == sorted(batches)
    assert dump(engine) == expected


@pytest.mark.postgres
def test_postgres_gives_the_same_rows(store: EventStore, expected: dict) -> None:
    with postgres_database() as url:
        result = catch_up(store, url, batch_size=1500)
        assert set(result.positions.values()) == {EVENTS}
        engine = open_db(url)
        try:
            assert dump(engine) == expected
            rebuild(store, engine, ["seed_lifecycle", "runs"], blue_green=True)
            assert dump(engine) == expected
            rebuild(store, engine, ["decisions"])
            assert dump(engine) == expected
        finally:
            engine.dispose()


def test_concurrent_runners_apply_each_event_once(tmp_path: Path, store: EventStore, expected: dict) -> None:
    engine = fresh_sqlite(tmp_path)
    errors: list[BaseException] = []

    def runner() -> None:
        try:
            catch_up(store, engine.url.render_as_string(), batch_size=250)
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=runner) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert dump(engine) == expected
    assert {entry.position for entry in status(engine)} == {EVENTS}


def _alert(position: int, summary: str, schema_version: int) -> pb.EventEnvelope:
    envelope = new_envelope("AlertFired", "alert-disk", pb.Alert(name="disk", summary=summary))
    envelope.global_position = position
    envelope.schema_version = schema_version
    return envelope


def test_a_payload_at_an_older_schema_version_is_upcast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alert = DEFAULT_REGISTRY.get("AlertFired")

    def shout(data: bytes) -> bytes:
        payload = pb.Alert.FromString(data)
        payload.summary = payload.summary.upper()
        return payload.SerializeToString()

    monkeypatch.setattr(alert, "schema_version", 2)
    monkeypatch.setattr(alert, "upcasters", [(1, shout)])
    engine = fresh_sqlite(tmp_path)
    apply_batch(engine, [_alert(1, "old", 1), _alert(2, "new", 2)], ["alerts"])
    with engine.connect() as connection:
        summaries = connection.execute(text("SELECT summary FROM alert_events ORDER BY position")).scalars()
        assert list(summaries) == ["OLD", "new"]
    engine.dispose()


def test_an_undecodable_payload_names_its_position(tmp_path: Path) -> None:
    broken = _alert(7, "x", 1)
    broken.payload = b"\xff\xff\xff"
    engine = fresh_sqlite(tmp_path)
    apply_batch(engine, [broken], ["alerts"])
    (entry,) = status(engine, [p for p in default_projections() if p.name == "alerts"])
    assert entry.stop is not None and entry.position == 6
    assert entry.stop.describe("alerts").startswith(
        "projection alerts stopped at position 7 (AlertFired): its payload cannot be decoded"
    )
    engine.dispose()
