"""Poison events (issue 20): an event a projection cannot decode or apply stops that projection, and only
that one, just below the event, with the position and type recorded where `esper db status` and
`esper recover` show them; `esper rebuild NAME` resumes it once an upcaster handles the payload.

The class is covered event type by event type: one type consumed by each read model alone, and
RollbackCompleted, which four of them consume.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from google.protobuf.message import Message
from prometheus_client import REGISTRY
from sqlalchemy import Engine, inspect

from eventstore import EventStore
from leyline import DEFAULT_REGISTRY, pb
from ops.bench._workload import realistic_log
from ops.cli import main
from projections import (
    PROJECTION_NAMES,
    ProjectionStopped,
    apply_batch,
    build_projections,
    catch_up,
    open_db,
    rebuild,
    status,
)
from projections.batches import GREEN_SUFFIX
from projections.projectors import Change
from tests.projections.helpers import dump, fresh_sqlite, postgres_database, to_store

EVENTS = 1500
GARBAGE = b"\xff\xff\xff"  # no protobuf message parses this
PROJECTIONS = build_projections()


def _exclusive_type(name: str, log: list[pb.EventEnvelope]) -> str:
    """An event type in the log that the named projection alone consumes."""
    mine = next(p for p in PROJECTIONS if p.name == name).event_types
    others = set().union(*(p.event_types for p in PROJECTIONS if p.name != name))
    return next(e.event_type for e in log if e.event_type in mine - others)


LOG = list(realistic_log(EVENTS, seed=5))
EVENT_TYPES = sorted({*(_exclusive_type(name, LOG) for name in PROJECTION_NAMES), "RollbackCompleted"})


def _consumers(event_type: str) -> set[str]:
    return {p.name for p in PROJECTIONS if event_type in p.event_types}


def _poisoned(event_type: str) -> tuple[list[pb.EventEnvelope], int]:
    """The log with the payload of one event of `event_type` (past the first tenth) made undecodable."""
    index = next(i for i, e in enumerate(LOG) if i > EVENTS // 10 and e.event_type == event_type)
    events = [pb.EventEnvelope.FromString(e.SerializeToString()) for e in LOG]
    events[index].payload = GARBAGE
    return events, events[index].global_position


def _tables(names: set[str]) -> set[str]:
    return {table for p in PROJECTIONS if p.name in names for table in p.table_names}


def _rows_of(engine: Engine, names: set[str]) -> dict[str, list[tuple[object, ...]]]:
    return {table: rows for table, rows in dump(engine).items() if table in _tables(names)}


def _reference(directory: Path, events: list[pb.EventEnvelope], name: str) -> Engine:
    engine = fresh_sqlite(directory, name)
    apply_batch(engine, events)
    return engine


class Fix:
    """An upcaster from version 1 that, once given the original payload, restores the poisoned one."""

    def __init__(self) -> None:
        self.original: bytes | None = None

    def __call__(self, data: bytes) -> bytes:
        return self.original if data == GARBAGE and self.original is not None else data


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_only_the_consumers_stop_at_the_poison_and_the_others_reach_the_head(
    tmp_path: Path, event_type: str
) -> None:
    events, position = _poisoned(event_type)
    stopped = _consumers(event_type)
    store = to_store(tmp_path / "log", events)
    engine = fresh_sqlite(tmp_path)
    result = catch_up(store, engine, batch_size=200)
    assert set(result.stopped) == stopped
    for name in PROJECTION_NAMES:
        assert result.positions[name] == (position - 1 if name in stopped else EVENTS)
    for stop in result.stopped.values():
        assert (stop.position, stop.event_type) == (position, event_type)
        assert stop.reason.startswith("its payload cannot be decoded: DecodeError")
    by_name = {entry.name: entry for entry in status(engine)}
    assert {name for name, entry in by_name.items() if entry.stop is not None} == stopped

    # The stopped ones hold exactly the rows of the log before the poison; the others all of it.
    before = _reference(tmp_path, LOG[: position - 1], "before.sqlite")
    assert _rows_of(engine, stopped) == _rows_of(before, stopped)
    everything = _reference(tmp_path, LOG, "everything.sqlite")
    running = set(PROJECTION_NAMES) - stopped
    assert _rows_of(engine, running) == _rows_of(everything, running)

    # Later catch-ups leave them where they stopped.
    again = catch_up(store, engine)
    assert set(again.stopped) == stopped and sum(again.applied.values()) == 0
    for engine_ in (engine, before, everything):
        engine_.dispose()
    store.close()


def test_a_projector_that_fails_stops_its_projection_alone(tmp_path: Path) -> None:
    target = next(e for e in LOG[EVENTS // 2 :] if e.event_type == "AlertFired").global_position

    def failing(envelope: pb.EventEnvelope, payload: Message) -> list[Change]:
        if envelope.global_position == target:
            raise RuntimeError("no such slot\nsecond line")
        return alerts.project(envelope, payload)

    alerts = next(p for p in PROJECTIONS if p.name == "alerts")
    projections = [dataclasses.replace(p, project=failing) if p is alerts else p for p in PROJECTIONS]
    store = to_store(tmp_path / "log", LOG)
    engine = fresh_sqlite(tmp_path)
    result = catch_up(store, engine, projections=projections)
    assert list(result.stopped) == ["alerts"]
    stop = result.stopped["alerts"]
    assert (stop.position, stop.event_type) == (target, "AlertFired")
    assert stop.reason == "the projector failed on it: RuntimeError: no such slot second line"
    assert {name for name, position in result.positions.items() if position == EVENTS} == set(
        PROJECTION_NAMES
    ) - {"alerts"}
    engine.dispose()
    store.close()


def _data_dir(tmp_path: Path, event_type: str) -> tuple[Path, int, EventStore]:
    events, position = _poisoned(event_type)
    return tmp_path, position, to_store(tmp_path / "log", events)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_recover_and_db_status_name_the_stop_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir, position, store = _data_dir(tmp_path, "AlertFired")
    store.close()
    code, out, err = run(capsys, "recover", "--data-dir", str(data_dir))
    assert code == 1
    assert "Traceback" not in err and err.count("\n") == 1
    assert f"projection alerts stopped at position {position} (AlertFired)" in err
    assert "esper rebuild alerts" in err
    assert "all but alerts (stopped) now at position" in out
    code, out, _ = run(capsys, "db", "status", "--data-dir", str(data_dir), "--json")
    assert code == 1
    entries = {entry["name"]: entry for entry in json.loads(out)["projections"]}
    assert entries["alerts"]["stopped"]["position"] == position
    assert entries["alerts"]["stopped"]["event_type"] == "AlertFired"
    assert entries["alerts"]["position"] == position - 1
    assert all(entry["stopped"] is None for name, entry in entries.items() if name != "alerts")
    code, out, _ = run(capsys, "db", "status", "--data-dir", str(data_dir))
    assert code == 1 and f"alerts stopped at position {position} (AlertFired)" in out


@pytest.mark.parametrize("event_type", ["AlertFired", "RollbackCompleted"])
def test_rebuild_resumes_a_stopped_projection_after_an_upcaster_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, event_type: str
) -> None:
    stopped = sorted(_consumers(event_type))
    data_dir, position, store = _data_dir(tmp_path, event_type)
    store.close()
    fix = Fix()
    registered = DEFAULT_REGISTRY.get(event_type)
    monkeypatch.setattr(registered, "schema_version", 2)
    monkeypatch.setattr(registered, "upcasters", [(1, fix)])
    assert run(capsys, "recover", "--data-dir", str(data_dir))[0] == 1
    # Without the fix, a rebuild stops at the same event again, in one line.
    code, _, err = run(capsys, "rebuild", *stopped, "--data-dir", str(data_dir), "--json")
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert f"stopped at position {position} ({event_type})" in err
    assert {REGISTRY.get_sample_value("esper_projections_stopped", {"projection": n}) for n in stopped} == {1}
    fix.original = LOG[position - 1].payload
    code, _, err = run(capsys, "rebuild", *stopped, "--data-dir", str(data_dir), "--json")
    assert code == 0, err
    assert {REGISTRY.get_sample_value("esper_projections_stopped", {"projection": n}) for n in stopped} == {0}
    assert run(capsys, "db", "status", "--data-dir", str(data_dir))[0] == 0
    reference = _reference(tmp_path, LOG, "reference.sqlite")
    live = open_db(f"sqlite:///{data_dir / 'projections.sqlite'}")
    assert dump(live) == dump(reference)
    assert {entry.name: entry.position for entry in status(live)} == dict.fromkeys(PROJECTION_NAMES, EVENTS)
    live.dispose()
    reference.dispose()


def test_a_blue_green_rebuild_that_stops_swaps_nothing_in(tmp_path: Path) -> None:
    events, position = _poisoned("AlertFired")
    clean = to_store(tmp_path / "clean", LOG)
    engine = fresh_sqlite(tmp_path)
    catch_up(clean, engine)
    clean.close()
    before = dump(engine, include_checkpoints=True)
    store = to_store(tmp_path / "log", events)
    with pytest.raises(ProjectionStopped, match=f"alerts stopped at position {position} \\(AlertFired\\)"):
        rebuild(store, engine, ["alerts", "runs"], blue_green=True)
    assert dump(engine, include_checkpoints=True) == before
    assert not [name for name in inspect(engine).get_table_names() if name.endswith(GREEN_SUFFIX)]
    engine.dispose()
    store.close()


@pytest.mark.postgres
def test_poison_stops_one_projection_on_postgres(tmp_path: Path) -> None:
    events, position = _poisoned("DecisionMade")
    store = to_store(tmp_path / "log", events)
    with postgres_database() as url:
        engine = open_db(url)
        result = catch_up(store, engine, batch_size=300)
        assert list(result.stopped) == ["decisions"]
        assert result.positions["decisions"] == position - 1
        assert {p for n, p in result.positions.items() if n != "decisions"} == {EVENTS}
        engine.dispose()
    store.close()
