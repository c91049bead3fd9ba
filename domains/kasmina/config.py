"""Kasmina's configuration: the lifecycle limits (Leyline's LifecycleConfig) and the seed optimizer's."""

from __future__ import annotations

from dataclasses import dataclass, field

from leyline.lifecycle import LifecycleConfig


@dataclass(frozen=True)
class KasminaConfig:
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    # Seed learning rate ramps from warmup_start_factor × base to base over these epochs. A new seed group's
    # first Adam steps are ≈ lr·sign(g) per parameter whatever the gradient's size; at the full 0.01 a
    # residual block's input convolution (non-negative, post-ReLU inputs; output convolution at zero) is
    # pushed below zero for every input within its first TRAINING epoch and the block fossilizes as x + b
    # (digits, seed 4: all 16 hidden units of slots 1 and 2 dead from their first epoch on; such dead
    # units keep Adam's second moment at 0 and take full-rate steps if a late host spike revives them).
    # Growth bench, digits, 5 seeds, live hidden units of BP009 seeds at the last epoch: slot 0 44/80 →
    # 64/80, slot 1 23/80 → 38/64; grown test accuracy 0.9588 → 0.9727 (spread 0.053 → 0.014).
    warmup_epochs: int = 3
    warmup_start_factor: float = 0.1
    seed_lr: float | None = None  # base learning rate of seed groups; None: the optimizer's first group's
    # (its unscheduled "initial_lr" where the run schedules it)
    lr_schedule: str = "constant"  # leyline.schedule, over the epochs from a seed's start to run_epochs
    # Of the seed's local loss model in TRAINING (slot._ShadowGradient). These were 2 warm-up epochs and
    # c = 1.0 while a cull with c = 0.1 read as critical loss drift to Tamiyo's risk engine; with the
    # absolute loss floors under the risk signals (RiskThresholds.loss_*_floor) and Tamiyo growing while
    # the host still learns, no warm-up and c = 0.1 give seeds the gradient to matter. Growth bench, digits,
    # 5 seeds (test accuracy, mean): grown 0.9538 → 0.9618 (small 0.9532, big 0.9838; gap_closed 0.02 → 0.28).
    training_curvature: float = 0.1
    # The run's last epoch, when known (Tolaria's run sets it): a germination whose lifecycle cannot reach its
    # verdict by then is refused (unfinished.too_late_reason). None: no limit.
    run_epochs: int | None = None
    gradient_window_epochs: int = 6  # epochs after germination with SeedGradientsMeasured (gradients.py)
