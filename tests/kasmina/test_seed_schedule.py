"""A seed's optimizer group follows the run's learning-rate schedule from its own start of training."""

from __future__ import annotations

import pytest
import torch

from leyline import pb
from leyline.schedule import lr_factor
from tests.kasmina.helpers import TinyCNN, manager
from tests.kasmina.test_torch import boundary, stages, train

BASE = 1e-2
RUN_EPOCHS = 10


def test_a_seed_group_decays_over_the_epochs_from_its_admission_at_the_unscheduled_base_rate() -> None:
    torch.manual_seed(0)
    host = TinyCNN()
    optimizer = torch.optim.Adam(host.parameters(), lr=BASE)
    train(host, optimizer, steps=2)
    kasmina, commander = manager(host, warmup_epochs=0, lr_schedule="cosine", run_epochs=RUN_EPOCHS)
    kasmina.attach_optimizer(optimizer)
    # the host's own group is half-way down its schedule; a seed starts at the base, not at that rate
    optimizer.param_groups[0].update(initial_lr=BASE, lr=BASE / 2)
    kasmina.execute(commander.command(pb.SEED_OP_GERMINATE), 1)
    assert stages(boundary(kasmina, host, 2)) == ["TRAINING"]
    seed_group = optimizer.param_groups[1]
    assert seed_group["kasmina_slot"] == 0 and seed_group["lr"] == pytest.approx(BASE)
    rates = []
    for epoch in (3, 4, 5):
        train(host, optimizer, steps=1)
        boundary(kasmina, host, epoch)
        rates.append(seed_group["lr"])
    # boundary e sets the rate of epoch e + 1, the (e − 1)-th after admission at boundary 2, of 8 left
    assert rates == [pytest.approx(BASE * lr_factor("cosine", e + 1, 2, RUN_EPOCHS)) for e in (3, 4, 5)]
    assert BASE > rates[0] > rates[1] > rates[2] > 0
    assert optimizer.param_groups[0]["lr"] == BASE / 2  # the host's group is Tolaria's, never Kasmina's


def test_the_constant_schedule_keeps_a_seed_at_its_base_rate() -> None:
    torch.manual_seed(0)
    host = TinyCNN()
    optimizer = torch.optim.Adam(host.parameters(), lr=BASE)
    kasmina, commander = manager(host, warmup_epochs=0, run_epochs=RUN_EPOCHS)
    kasmina.attach_optimizer(optimizer)
    kasmina.execute(commander.command(pb.SEED_OP_GERMINATE), 1)
    assert stages(boundary(kasmina, host, 2)) == ["TRAINING"]
    for epoch in (3, 4):
        boundary(kasmina, host, epoch)
        assert optimizer.param_groups[1]["lr"] == BASE
