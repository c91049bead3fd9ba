"""The growth benchmark's grown arm: Tolaria's loop, Kasmina's lifecycle and Tamiyo, wired together."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from domains.tolaria.config import RunConfig
from domains.tolaria.trainer import Trainer
from eventstore import open_store
from leyline import decode_payload, pb
from ops.bench.growth import grow, seed_slot, static_widths

torch.set_num_threads(1)


def test_the_grown_arm_decides_every_epoch_and_logs_signed_commands() -> None:
    epochs = 4
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "log")
        try:
            config = RunConfig(epochs=epochs, seed=0, checkpoint_every=epochs)
            trainer = Trainer(config, "rgrowtest", store, Path(tmp), slot_factory=seed_slot)
            bridge = grow(trainer, "rgrowtest", seed=0)
            trainer.start()
            summary = trainer.run()
            events = list(store.read_all())
        finally:
            store.close()
    assert summary.epochs == epochs and 0.0 < summary.test_accuracy <= 1.0
    decisions = [decode_payload(e) for e in events if e.event_type == "DecisionMade"]
    assert len(decisions) == epochs == len(bridge.decision_ms)
    packets = [decode_payload(e) for e in events if e.event_type == "EpochCompleted"]
    assert [d.packet_id for d in decisions] == [p.state.packet_id for p in packets]  # type: ignore[attr-defined]
    assert all(isinstance(d, pb.DecisionMade) and d.policy_name == "heuristic" for d in decisions)
    assert all(d.inputs_summary["parameters"] == summary.parameters for d in decisions)  # type: ignore[attr-defined]
    commands = [e for e in events if e.event_type == "AdaptationCommandIssued"]
    assert all(len(c.hmac) == 32 for c in commands)


def test_the_static_host_matches_the_grown_size() -> None:
    options, count = static_widths(1350)
    assert abs(count - 1350) < 60
    assert set(options) == {"channels1", "channels2"}
