"""A culled seed stays attached through its embargo but is no longer part of the trainable model: its
parameters are not counted (EpochCompleted's parameters, Tamiyo's budget, Simic's parameter rent), and a
checkpoint taken during the embargo reloads it the same way."""

from __future__ import annotations

import torch
from torch import nn

from domains.kasmina import EpochMeasurements, Kasmina
from domains.tolaria.hosts import count_parameters
from leyline.lifecycle import EMBARGOED
from tests.kasmina.helpers import TinyCNN, evaluator, manager
from tests.kasmina.test_torch import stages, to_training

INPUTS = torch.randn(128, 1, 8, 8, generator=torch.Generator().manual_seed(2))
TARGETS = torch.randint(0, 3, (128,), generator=torch.Generator().manual_seed(3))


def boundary(kasmina: Kasmina, host: nn.Module, epoch: int) -> list[str]:
    measured = evaluator(host, INPUTS, TARGETS)
    return stages(
        kasmina.end_epoch(
            epoch,
            EpochMeasurements(measured.loss, measured.accuracy),
            lambda: evaluator(host, INPUTS, TARGETS),
        )
    )


def culled_in_training() -> tuple[TinyCNN, Kasmina, int]:
    """A TinyCNN whose residual seed is culled at its first gate (G1: non-finite weights)."""
    torch.manual_seed(0)
    host = TinyCNN()
    bare = count_parameters(host)
    kasmina, _, _ = to_training(host)
    assert boundary(kasmina, host, 2) == ["TRAINING"]
    seed = host.slot0.seed
    assert seed is not None and count_parameters(host) > bare
    with torch.no_grad():
        for parameter in seed.parameters():
            parameter.fill_(float("nan"))
    assert boundary(kasmina, host, 3) == ["CULLED", "EMBARGOED"]
    return host, kasmina, bare


def test_a_culled_seed_in_its_embargo_adds_no_trainable_parameter() -> None:
    host, _, bare = culled_in_training()
    assert host.slot0.seed is not None  # still attached until the slot is scrubbed
    assert count_parameters(host) == bare
    assert not any(p.requires_grad for p in host.slot0.seed.parameters())


def test_a_checkpoint_taken_in_the_embargo_reloads_the_seed_retired() -> None:
    _, kasmina, bare = culled_in_training()
    saved = kasmina.state_dict()

    torch.manual_seed(0)
    resumed = TinyCNN()
    again, _ = manager(resumed)
    again.attach_optimizer(torch.optim.Adam(resumed.parameters(), lr=1e-2))
    again.load_state_dict(saved)
    assert again.state.slot(0).stage == EMBARGOED and resumed.slot0.seed is not None
    assert count_parameters(resumed) == bare
