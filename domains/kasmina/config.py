"""Kasmina's configuration: the lifecycle limits (Leyline's LifecycleConfig) and the seed optimizer's."""

from __future__ import annotations

from dataclasses import dataclass, field

from leyline.lifecycle import LifecycleConfig


@dataclass(frozen=True)
class KasminaConfig:
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    # Seed learning rate ramps from warmup_start_factor × base to base over warmup_epochs. Off by default:
    # TRAINING leaves the host's output untouched whatever the seed does, and a 2-epoch warm-up spanned the
    # whole of TRAINING (min_training_epochs), so a newborn seed learned at 10-55 % of the rate.
    warmup_epochs: int = 0
    warmup_start_factor: float = 0.1
    seed_lr: float | None = None  # base learning rate of seed groups; None: the optimizer's first group's
    # Of the seed's local loss model in TRAINING (slot._ShadowGradient): its target is the host's activation
    # minus (1/c) × each example's loss gradient. With c = 1 that target vanishes at the plateau where
    # seeds are grafted and the seed stayed on the host's output (G1 gaps of 1e-3 to 1e-5 on digits).
    training_curvature: float = 0.01
    gradient_window_epochs: int = 6  # epochs after germination with SeedGradientsMeasured (gradients.py)
