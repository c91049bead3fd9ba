"""The growth benchmark's grown arm: Tolaria's loop and Kasmina with Tamiyo as the controller."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from domains.tamiyo import TamiyoController
from domains.tolaria.config import RunConfig
from domains.tolaria.data import load_dataset
from domains.tolaria.hosts import HostSpec, build_host, count_parameters
from eventstore import open_store
from leyline import decode_payload, pb
from leyline.datadir import DataDir
from leyline.signing import Keyring
from ops.bench.growth import DATA, HOST, PARAMETER_BUDGET, TAMIYO, static_widths, tamiyo_for
from ops.compose import build_trainer

torch.set_num_threads(1)


def test_the_grown_arm_decides_every_epoch_on_tolarias_packets() -> None:
    epochs = 4
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "log")
        try:
            keyring = Keyring.generate()
            config = RunConfig(epochs=epochs, seed=0, checkpoint_every=epochs, controller="noop")
            trainer = build_trainer(config, "rgrowtest", store, DataDir(Path(tmp)), keyring=keyring)
            tamiyo = tamiyo_for(trainer, keyring, seed=0)
            assert isinstance(tamiyo, TamiyoController) and tamiyo.slot_kinds
            trainer.controller = tamiyo
            trainer.start()
            summary = trainer.run()
            events = list(store.read_all())
        finally:
            store.close()
    assert summary.epochs == epochs and 0.0 < summary.test_accuracy <= 1.0
    decisions = [decode_payload(e) for e in events if e.event_type == "DecisionMade"]
    assert len(decisions) == epochs and all(isinstance(d, pb.DecisionMade) for d in decisions)
    packets = [decode_payload(e) for e in events if e.event_type == "EpochCompleted"]
    assert [d.packet_id for d in decisions] == [p.state.packet_id for p in packets]  # type: ignore[attr-defined]
    assert all(d.inputs_summary["parameters"] == summary.parameters for d in decisions)  # type: ignore[attr-defined]
    assert tamiyo.state.decisions == epochs


def test_the_static_host_matches_the_grown_size() -> None:
    options, count = static_widths(1350)
    assert abs(count - 1350) < 60
    assert set(options) == {"channels1", "channels2"}


def test_the_bench_configures_one_small_host_split_and_lifecycle() -> None:
    small = count_parameters(build_host("cnn-lite", HostSpec((1, 8, 8), 10, HOST)))
    assert small == 930 and 2 * small == PARAMETER_BUDGET
    assert TAMIYO.parameter_budget == PARAMETER_BUDGET
    first, second = (load_dataset("digits", seed, DATA) for seed in (0, 1))
    assert torch.equal(first.test.targets, second.test.targets)
