"""Shared by the Tolaria tests: a small run configuration, permissive gates, reading a run's events back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from domains.kasmina.config import KasminaConfig
from domains.tolaria.aggregate import run_stream
from domains.tolaria.trainer import WALL_CLOCK_METRICS
from eventstore import open_store
from leyline import decode_payload, pb
from leyline.datadir import DataDir
from leyline.lifecycle import LifecycleConfig

SMALL = {
    "controller": "noop",
    "epochs": 6,
    "dataset": "synthetic-images",
    "dataset_options": {"samples": 240},
    "batch_size": 32,
}

# Gates any seed passes: for tests about what a graft does to the host, not whether the seed helps.
PERMISSIVE = KasminaConfig(
    lifecycle=LifecycleConfig(
        alpha_ramp_epochs=1,
        probation_epochs=1,
        host_loss_tolerance=1e6,
        shadow_tolerance=1e6,
        min_contribution=-1e6,
    )
)


def run_events(data_dir: Path, run_id: str) -> list[pb.EventEnvelope]:
    store = open_store(DataDir(data_dir).log, create=False)
    try:
        return list(store.read_stream(run_stream(run_id)))
    finally:
        store.close()


def epoch_records(events: list[pb.EventEnvelope]) -> list[dict[str, Any]]:
    """EpochCompleted payloads without their wall-clock fields, in log order."""
    records = []
    for envelope in events:
        if envelope.event_type != "EpochCompleted":
            continue
        payload = decode_payload(envelope)
        assert isinstance(payload, pb.EpochCompleted)
        for name in WALL_CLOCK_METRICS:
            del payload.state.metrics[name]
        payload.epoch_wall_ms = 0
        records.append(
            {"event_id": envelope.event_id, "payload": payload.SerializeToString(deterministic=True)}
        )
    return records


def checkpoint_hashes(events: list[pb.EventEnvelope]) -> dict[int, str]:
    hashes = {}
    for envelope in events:
        if envelope.event_type == "CheckpointCommitted":
            payload = decode_payload(envelope)
            assert isinstance(payload, pb.CheckpointCommitted)
            hashes[payload.manifest.epoch] = payload.manifest.content_hash
    return hashes


def payloads(events: list[pb.EventEnvelope], kind: str) -> list[Any]:
    return [decode_payload(e) for e in events if e.event_type == kind]
