"""Headroom of dormant slots: measured on the training pass, handed to the controller, not logged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from domains.kasmina import SeedSlot
from domains.tolaria.config import build_config
from domains.tolaria.headroom import HeadroomMeter, with_headroom
from domains.tolaria.hosts import HostSpec, build_host
from domains.tolaria.workload import seed_slot
from eventstore import open_store
from leyline import pb
from leyline.controller import ControllerContext, ControllerOutput, NoOpController
from leyline.datadir import DataDir
from leyline.seed_metrics import HEADROOM_METRIC
from ops.compose import new_run
from tests.tolaria.helpers import SMALL, payloads, run_events


def host_and_meter(sample_every: int = 1) -> tuple[nn.Module, HeadroomMeter]:
    torch.manual_seed(0)
    model = build_host("cnn-lite", HostSpec((1, 8, 8), 10, {}, seed_slot))
    slots = {m.slot: m for m in model.modules() if isinstance(m, SeedSlot)}
    return model, HeadroomMeter(slots, sample_every)


def train_step(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> None:
    model.train()
    model.zero_grad()
    nn.functional.cross_entropy(model(inputs), targets).backward()


def test_headroom_is_the_per_sample_mean_whatever_the_batch() -> None:
    model, meter = host_and_meter()
    inputs, targets = torch.rand(6, 1, 8, 8), torch.arange(6)
    train_step(model, inputs, targets)
    batched = meter.drain()
    singles = []
    for i in range(6):
        train_step(model, inputs[i : i + 1], targets[i : i + 1])
        singles.append(meter.drain())
    assert set(batched) == {0, 1, 2, 3}
    for slot, value in batched.items():
        assert value > 0
        assert value == pytest.approx(sum(s[slot] for s in singles) / 6, rel=1e-5)


def test_every_nth_batch_is_measured_from_the_first_of_the_epoch() -> None:
    model, every = host_and_meter()
    inputs, targets = torch.rand(8, 1, 8, 8), torch.arange(8) % 10
    for start in range(0, 8, 2):
        train_step(model, inputs[start : start + 2], targets[start : start + 2])
    every_batch = every.drain()
    model, sampled = host_and_meter(sample_every=3)
    for start in range(0, 8, 2):
        train_step(model, inputs[start : start + 2], targets[start : start + 2])
    model, first_and_fourth = host_and_meter()
    for start in (0, 6):
        train_step(model, inputs[start : start + 2], targets[start : start + 2])
    assert sampled.drain() == pytest.approx(first_and_fourth.drain())
    assert set(every_batch) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="sample_every"):
        HeadroomMeter({}, 0)


def test_only_dormant_slots_in_training_are_measured_and_drain_resets() -> None:
    model, meter = host_and_meter()
    inputs, targets = torch.rand(4, 1, 8, 8), torch.arange(4)
    model.eval()
    model(inputs)
    assert meter.drain() == {}
    slots = [m for m in model.modules() if isinstance(m, SeedSlot)]
    slots[1].stage = pb.SEED_STAGE_FOSSILIZED  # no seed attached: the activation still passes through
    train_step(model, inputs, targets)
    assert set(meter.drain()) == {0, 2, 3}
    assert meter.drain() == {}


def test_with_headroom_annotates_copies() -> None:
    seeds = [pb.SeedState(slot=0), pb.SeedState(slot=1, stage=pb.SEED_STAGE_TRAINING)]
    annotated = with_headroom(seeds, {0: 2.5})
    assert annotated[0].metrics[HEADROOM_METRIC] == 2.5 and HEADROOM_METRIC not in seeds[0].metrics
    assert annotated[1] is seeds[1]


class Recording(NoOpController):
    def __init__(self, measures_headroom: bool = True) -> None:
        self.contexts: list[ControllerContext] = []
        self.measures_headroom = measures_headroom

    def decide(self, packet: pb.SystemStatePacket, context: ControllerContext) -> ControllerOutput:
        self.contexts.append(context)
        return ControllerOutput()


def test_the_controller_sees_headroom_and_the_packet_stays_lean(tmp_path: Path) -> None:
    controller = Recording()
    store = open_store(DataDir(tmp_path).log)
    try:
        new_run(store, DataDir(tmp_path), build_config(SMALL), "rhead", controller=controller).run()
    finally:
        store.close()
    assert len(controller.contexts) == SMALL["epochs"]
    for context in controller.contexts:
        assert [s.slot for s in context.seeds] == [0, 1, 2, 3]
        assert all(s.metrics[HEADROOM_METRIC] > 0 for s in context.seeds)
    packets = [p.state for p in payloads(run_events(tmp_path, "rhead"), "EpochCompleted")]
    assert all(HEADROOM_METRIC not in s.metrics for p in packets for s in p.seeds)


def test_a_controller_that_ignores_headroom_gets_none_measured(tmp_path: Path) -> None:
    controller = Recording(measures_headroom=False)
    store = open_store(DataDir(tmp_path).log)
    try:
        trainer = new_run(store, DataDir(tmp_path), build_config(SMALL), "rnohead", controller=controller)
        trainer.run()
    finally:
        store.close()
    assert not trainer.headroom.active
    assert all(HEADROOM_METRIC not in s.metrics for context in controller.contexts for s in context.seeds)


def test_an_inactive_meter_measures_nothing_until_activated() -> None:
    model, meter = host_and_meter()
    inputs, targets = torch.rand(4, 1, 8, 8), torch.arange(4)
    meter.activate(False)
    train_step(model, inputs, targets)
    assert meter.drain() == {}
    meter.activate(True)
    meter.activate(True)  # idempotent: one hook per slot
    train_step(model, inputs, targets)
    assert set(meter.drain()) == {0, 1, 2, 3} and len(meter.handles) == 4
