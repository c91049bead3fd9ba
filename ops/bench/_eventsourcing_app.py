"""One `eventsourcing` application, saving through Esper's recorder and through the library's SQLite one.

`app_save_eps` is the events per second that `Application.save` persists on Esper's file store
(eventstore.eventsourcing_recorders, the store's default fsync policy: a save returns after its append's
fdatasync); `baseline_app_save_eps` the same application, code and workload on the library's SQLite
application recorder (a file database in WAL mode, synchronous=FULL: an fsync per commit). Both are
durable per save, so the comparison goes through one API, transcoding and mapping included. Each save
persists one new aggregate with EVENTS_PER_SAVE events; the two sides alternate over ROUNDS rounds, each
on a fresh database, and each figure is the median of its rounds.

Called from the event-store bench: `results.extend(app_save_results(directory, options))`.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from ops.bench import BenchOptions, Result

EVENTS_PER_SAVE = 5
ROUNDS = 3
QUICK_SAVES = 200
FULL_SAVES = 1000


class Sensor(Aggregate):
    @event("Registered")
    def __init__(self, name: str) -> None:
        self.name = name
        self.readings = 0

    @event("Read")
    def record(self, value: float) -> None:
        self.readings += 1


class Sensors(Application[UUID]):
    def register(self, name: str) -> None:
        sensor = Sensor(name)
        for reading in range(EVENTS_PER_SAVE - 1):
            sensor.record(reading * 0.5)
        self.save(sensor)


def _saves_per_s(env: Mapping[str, str], saves: int) -> float:
    """Events per second persisted by `saves` saves of an application on `env`'s persistence module."""
    app = Sensors(env=dict(env))
    try:
        started = time.perf_counter()
        for number in range(saves):
            app.register(f"sensor-{number}")
        return saves * EVENTS_PER_SAVE / (time.perf_counter() - started)
    finally:
        app.close()


def esper_env(location: Path) -> dict[str, str]:
    return {"PERSISTENCE_MODULE": "eventstore.eventsourcing_recorders", "ESPER_STORE_URL": str(location)}


def sqlite_env(location: Path) -> dict[str, str]:
    return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(location)}


def app_save_results(directory: Path, options: BenchOptions) -> list[Result]:
    """`app_save_eps` beside `baseline_app_save_eps`, measured in alternating rounds under `directory`."""
    saves = QUICK_SAVES if options.quick else FULL_SAVES
    options.progress("an eventsourcing application saving through Esper's recorder and SQLite's")
    ours, baseline = [], []
    for _ in range(ROUNDS):
        ours.append(_saves_per_s(esper_env(directory / f"app-esper-{uuid.uuid4().hex}"), saves))
        baseline.append(_saves_per_s(sqlite_env(directory / f"app-sqlite-{uuid.uuid4().hex}.db"), saves))
    value, base = statistics.median(ours), statistics.median(baseline)
    return [
        Result("app_save_eps", value, "events/s", "baseline_app_save_eps", base, value / base),
        Result("baseline_app_save_eps", base, "events/s"),
    ]
