"""Shared by the Tolaria tests: a small run configuration, permissive gates, reading a run's events back,
and what a run's last checkpoint must hold of its seeds."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from domains.kasmina.config import KasminaConfig
from domains.tolaria.aggregate import run_stream
from domains.tolaria.checkpoint import deserialize, read_file
from domains.tolaria.report import model_sha256
from domains.tolaria.trainer import WALL_CLOCK_METRICS, Trainer
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


def assert_seeds_saved_with_the_model(
    trainer: Trainer,
    data_dir: DataDir,
    events: list[pb.EventEnvelope],
    slots: Iterable[int],
    epochs: int,
    model_hash: str,
) -> None:
    """The run's last checkpoint is its final epoch's and holds each given slot's seed weights as the live
    seed has them, and the live model hashes to `model_hash` (the run summary's)."""
    last = [decode_payload(e) for e in events if e.event_type == "CheckpointCommitted"][-1]
    assert isinstance(last, pb.CheckpointCommitted) and last.manifest.epoch == epochs
    saved = deserialize(read_file(data_dir, last.manifest.path, last.manifest.content_hash))["model"]
    for slot in slots:
        seed = trainer.kasmina.slots[slot].seed
        assert seed is not None
        for name, tensor in seed.state_dict().items():
            assert torch.equal(saved[f"slots.{slot}.seed.{name}"], tensor)
    assert model_sha256(trainer.model) == model_hash
