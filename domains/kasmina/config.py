"""Kasmina's configuration: the lifecycle limits (Leyline's LifecycleConfig) and the seed optimizer's."""

from __future__ import annotations

from dataclasses import dataclass, field

from leyline.lifecycle import LifecycleConfig


@dataclass(frozen=True)
class KasminaConfig:
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    warmup_epochs: int = 2  # seed learning rate ramps from warmup_start_factor × base to base
    warmup_start_factor: float = 0.1
    seed_lr: float | None = None  # base learning rate of seed groups; None: the optimizer's first group's
    training_curvature: float = 1.0  # of the seed's local loss model in TRAINING (slot._ShadowGradient)
    gradient_window_epochs: int = 6  # epochs after germination with SeedGradientsMeasured (gradients.py)
