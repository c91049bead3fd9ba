"""Adversarial templates inject their fault, and only within its bounds (drills only)."""

from __future__ import annotations

import time

import torch

from domains.karn import building
from domains.karn.blocks import CONV
from domains.karn.blueprint import Use
from domains.karn.faults import BusyWait, FaultInjected, LockInversion, MemoryLeak, RaceCondition

SHAPE = (4, 4, 4)


def drill(blueprint_id: str, **parameters: float) -> torch.nn.Module:
    return building.build(blueprint_id, parameters, CONV, SHAPE, use=Use.DRILL, init_seed=1)


def input_gradient_norm(module: torch.nn.Module) -> float:
    x = torch.randn(2, *SHAPE, requires_grad=True)
    module(x).sum().backward()
    assert x.grad is not None
    return float(x.grad.norm())


def test_exploding_and_vanishing_gradients_scale_the_backward_pass_only() -> None:
    x = torch.randn(2, *SHAPE)
    exploding = drill("BP043", gain=1000.0)
    plain = building.build("BP008", {"init_scale": 1.0}, CONV, SHAPE)
    assert torch.isfinite(exploding(x)).all()
    assert input_gradient_norm(exploding) > 50 * input_gradient_norm(plain)
    vanishing = drill("BP044", scale=1e-6)
    assert torch.isfinite(vanishing(x)).all()
    assert input_gradient_norm(vanishing) < 1e-3


def test_nan_injection_at_its_period() -> None:
    module = drill("BP045", period=4)
    x = torch.randn(2, *SHAPE)
    assert [bool(torch.isnan(module(x)).any()) for _ in range(8)] == [False, False, False, True] * 2


def test_adversarial_noise_is_bounded_by_epsilon() -> None:
    module = drill("BP050", epsilon=0.05)
    clean = drill("BP050", epsilon=0.05)
    x = torch.randn(3, *SHAPE)
    difference = (module(x) - clean(x)).detach()  # same weights (same init seed), independent noise
    assert 0 < float(difference.abs().max()) <= 0.1 + 1e-6


def test_busy_wait_trips_a_time_budget_and_ends() -> None:
    module = drill("BP046", wait_ms=30.0)
    assert isinstance(module, FaultInjected) and isinstance(module.fault, BusyWait)
    started = time.perf_counter()
    out = module(torch.randn(2, *SHAPE))
    assert time.perf_counter() - started >= 0.03
    assert out.shape == (2, *SHAPE)


def test_memory_leak_grows_then_stops_at_its_bound() -> None:
    module = drill("BP047", leak_kb=256.0, max_mb=1.0)
    assert isinstance(module, FaultInjected) and isinstance(module.fault, MemoryLeak)
    x = torch.randn(2, *SHAPE)
    held = []
    for _ in range(8):
        module(x)
        held.append(module.fault.retained_bytes)
    assert held[:4] == [262_144, 524_288, 786_432, 1_048_576]
    assert held[4:] == [1_048_576] * 4


def test_lock_inversion_stalls_for_its_timeout_then_returns() -> None:
    module = drill("BP048", timeout_ms=50.0)
    assert isinstance(module, FaultInjected) and isinstance(module.fault, LockInversion)
    started = time.perf_counter()
    module(torch.randn(2, *SHAPE))
    assert time.perf_counter() - started >= 0.05
    assert module.fault.stalls == 1


def test_race_condition_perturbation_is_bounded() -> None:
    module = drill("BP049", threads=4, increments=2000)
    assert isinstance(module, FaultInjected) and isinstance(module.fault, RaceCondition)
    x = torch.randn(2, *SHAPE)
    inner = module.inner(x).detach()
    out = module(x).detach()
    assert float((out - inner).abs().max()) <= 4 * 2000 * 1e-6
    assert 0 <= module.fault.lost_updates <= 4 * 2000
