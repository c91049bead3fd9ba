"""Placement: on a CPU a host and every seed grafted into it hold their convolution weights channels-last
(torch vectorises pooling and convolution there); the values, the outputs and a checkpoint's bytes are
those of the default format."""

from __future__ import annotations

import copy

import torch
from torch import nn

from domains.kasmina import Kasmina
from domains.kasmina.placement import place
from domains.tolaria import archive
from domains.tolaria.hosts import HostSpec, build_host
from leyline import pb
from tests.kasmina.helpers import TinyCNN, manager

CPU = torch.device("cpu")


def channels_last(module: nn.Module) -> bool:
    weights = [p for p in module.parameters() if p.dim() == 4]
    return bool(weights) and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)


def test_a_placed_host_computes_what_it_computed_and_checkpoints_the_same_bytes() -> None:
    torch.manual_seed(0)
    host = build_host("cnn-lite", HostSpec((1, 28, 28), 10))
    reference = copy.deepcopy(host)
    placed = place(host, CPU)
    assert placed is host and channels_last(host) and not channels_last(reference)
    images = torch.randn(16, 1, 28, 28)
    torch.testing.assert_close(host(images), reference(images), rtol=1e-5, atol=1e-6)
    assert archive.pack({"model": host.state_dict()}) == archive.pack({"model": reference.state_dict()})


def grafted() -> tuple[TinyCNN, Kasmina]:
    """A placed host with a 3×3 residual seed (BP_RES3: a 1×1 kernel's layout has nothing to change) grafted
    at slot 0 at epoch 1."""
    torch.manual_seed(0)
    host = TinyCNN()
    place(host, CPU)
    kasmina, commander = manager(host)
    kasmina.execute(commander.command(pb.SEED_OP_GERMINATE, blueprint_id="BP_RES3"), 1)
    return host, kasmina


def test_a_seed_grafted_on_a_cpu_takes_the_channels_last_format_of_its_host() -> None:
    host, _ = grafted()
    seed = host.slot0.seed
    assert seed is not None and channels_last(seed)


def test_a_seed_re_grafted_from_a_checkpoint_is_placed_as_at_its_graft() -> None:
    _, kasmina = grafted()
    resumed_host = TinyCNN()
    place(resumed_host, CPU)
    resumed, _ = manager(resumed_host)
    resumed.load_state_dict(kasmina.state_dict())
    seed = resumed_host.slot0.seed
    assert seed is not None and channels_last(seed)
