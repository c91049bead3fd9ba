"""Simulated runs for the dashboard tests: grown runs and a no-growth run of the same task (the baseline)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from eventstore import EventStore, open_store
from leyline import new_envelope, pb
from leyline.datadir import DataDir
from ops.bench._workload import Simulator
from ops.bench.serve_dashboard import epoch_batches
from tests.projections.helpers import unpositioned

TASK = {"host": "cnn-lite", "dataset": "digits", "host_options": {}, "dataset_options": {}}


def with_controller(events: list[pb.EventEnvelope], controller: str) -> list[pb.EventEnvelope]:
    """The simulator's events with the run's recorded config naming the task and the controller."""
    for envelope in events:
        if envelope.event_type == "RunStarted":
            started = pb.RunStarted()
            started.ParseFromString(envelope.payload)
            config = {**json.loads(started.config_json or "{}"), **TASK, "controller": controller}
            started.config_json = json.dumps(config)
            envelope.payload = started.SerializeToString()
    return events


def alerts() -> list[pb.EventEnvelope]:
    """One alert fired and resolved, another still firing."""
    resolved = pb.Alert(name="oona_queue_depth", severity="warning", summary="queue above 4000", value=4100)
    firing = pb.Alert(name="training_latency_high", severity="critical", summary="hook over budget", value=31)
    return [
        new_envelope("AlertFired", "alert-oona_queue_depth", resolved),
        new_envelope("AlertResolved", "alert-oona_queue_depth", resolved),
        new_envelope("AlertFired", "alert-training_latency_high", firing),
    ]


def append(store: EventStore, events: list[pb.EventEnvelope], batch: int = 500) -> None:
    for start in range(0, len(events), batch):
        store.append(unpositioned(events[start : start + batch]))


def dashboard_runs(data_dir: Path, epochs: int = 30) -> dict[str, str]:
    """Two grown runs (one with a rollback), their no-growth baseline and alerts; returns {role: run id}."""
    simulator = Simulator(seed=4)  # its grown run has a graft, a cull, a fossilization and a rollback
    events = list(simulator.catalogue(5))
    events += with_controller(list(simulator.run(epochs, run_id="grown", rollback_every=12)), "tamiyo")
    events += with_controller(list(simulator.run(epochs, run_id="plain", rollback_every=0)), "tamiyo")
    events += with_controller(list(simulator.run(epochs, run_id="nogrowth", rollback_every=0)), "noop")
    events += alerts()
    store = open_store(DataDir(data_dir).log)
    try:
        append(store, events)
    finally:
        store.close()
    return {"grown": "grown", "plain": "plain", "baseline": "nogrowth"}


def continuing(store: EventStore, seed: int) -> Simulator:
    """A simulator for events appended after what the store holds: positions from its head, and event
    ids counted from far above any earlier simulator's (theirs start at 1, and the store would take an
    event with a known id for a repeat of it)."""
    simulator = Simulator(seed, first_position=store.head_position() + 1)
    simulator.counter = 1 << 24
    return simulator


def epochs_of(simulator: Simulator, run_id: str, epochs: int) -> Iterator[list[pb.EventEnvelope]]:
    """A simulated grown run's events cut after each EpochCompleted: what one epoch boundary appends."""
    for batch in epoch_batches(simulator, run_id, epochs):
        yield with_controller(batch, "tamiyo")
