"""Kasmina's configuration: the lifecycle limits (Leyline's LifecycleConfig) and the seed optimizer's."""

from __future__ import annotations

from dataclasses import dataclass, field

from leyline.lifecycle import LifecycleConfig


@dataclass(frozen=True)
class KasminaConfig:
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    warmup_epochs: int = 0  # seed learning rate ramps from warmup_start_factor × base to base
    warmup_start_factor: float = 0.1
    seed_lr: float | None = None  # base learning rate of seed groups; None: the optimizer's first group's
    # Of the seed's local loss model in TRAINING (slot._ShadowGradient). No warm-up with c = 0.01 or 0.1
    # was measured (growth bench, digits) without an accuracy gain, and on a weak host c = 0.01 left G1
    # culling every seed while 0.1 grew one whose cull then reads as critical loss drift to Tamiyo's risk
    # engine: the defaults stay until that is settled.
    training_curvature: float = 0.1
    # The run's last epoch, when known (Tolaria's run sets it): a germination whose lifecycle cannot reach its
    # verdict by then is refused (unfinished.too_late_reason). None: no limit.
    run_epochs: int | None = None
    gradient_window_epochs: int = 6  # epochs after germination with SeedGradientsMeasured (gradients.py)
