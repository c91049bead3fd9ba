"""The risk engine: training-health signals → a risk level 0–4 (green … critical), pure and torch-free.

Each signal maps to a level through four ascending thresholds (the number of thresholds it reaches), and
the raw level of a window is the highest signal level, so the level is monotone in every signal: raising
one signal never lowers it. A non-finite signal is critical.

Hysteresis (SPEC §10, 3 windows): the effective level is the highest raw level of the last 3 windows, so it
rises at once and falls only after the higher level has been absent for 3 windows. Conservative mode has
its own hysteresis in `domains.tamiyo.policy`: it is entered at once and left after 3 calm windows.

What a level does (`action_for`): 0 proceeds; 1–2 mitigate (lower-risk blueprints, slower alpha ramp);
3 and above block germination and advancement; a rollback is requested only when a loss signal itself is
critical this window (SPEC §8: loss explosion, accuracy collapse): a gradient spike or a slow hook is a
reason to hold still, not to throw epochs away.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import cast

from leyline import pb
from leyline.seed_metrics import ISOLATION_METRIC

MAX_LEVEL = 4
HYSTERESIS_WINDOWS = 3

# Stages whose seed touches the host's forward or training signal, and how much each weighs in the
# lifecycle-context signal: blending and shadowing change what the host computes.
ACTIVE_STAGE_WEIGHTS: dict[int, float] = {
    pb.SEED_STAGE_GERMINATED: 0.25,
    pb.SEED_STAGE_TRAINING: 0.5,
    pb.SEED_STAGE_BLENDING: 1.0,
    pb.SEED_STAGE_SHADOWING: 1.0,
    pb.SEED_STAGE_PROBATIONARY: 0.5,
}
ISOLATION_VIOLATION_WEIGHT = 1.0


@dataclass(frozen=True)
class RiskSignals:
    """One window's health signals; each grows with danger."""

    grad_norm_ratio: float = 1.0  # gradient norm / median of the recent windows' norms
    loss_drift: float = 0.0  # relative rise of validation loss above its recent best
    loss_explosion: float = 1.0  # training loss / best training loss so far
    memory_pressure: float = 0.0  # device memory used / total
    hook_latency_ratio: float = 0.0  # previous end-of-epoch hook / its budget
    lifecycle: float = 0.0  # active seeds weighted by stage, seed risk, isolation violations


Thresholds = tuple[float, float, float, float]
FLOORS = ("loss_drift_floor", "loss_explosion_floor")  # RiskThresholds' scalars (nats), not level tuples


@dataclass(frozen=True)
class RiskThresholds:
    """Per signal, the values at which levels 1, 2, 3 and 4 begin; under the relative loss signals, the
    absolute rise (nats) below which they read as calm."""

    # The host's gradient norm is its last batch's: noisy, so only orders of magnitude count.
    grad_norm_ratio: Thresholds = (4.0, 10.0, 100.0, 1e4)
    # Validation sets are small (digits: ~360 samples), so a 10 % wobble of the loss is noise.
    loss_drift: Thresholds = (0.15, 0.3, 1.0, 3.0)
    loss_explosion: Thresholds = (2.0, 4.0, 8.0, 15.0)
    memory_pressure: Thresholds = (0.8, 0.9, 0.95, 0.99)
    hook_latency_ratio: Thresholds = (1.0, 2.0, 5.0, 20.0)
    lifecycle: Thresholds = (1.5, 2.5, 4.0, 6.0)
    # Both loss signals are ratios, and a ratio of near-zero losses is noise. Measured on two 80-epoch
    # digits runs (growth defaults, seeds 0 and 1): calm epochs put the validation loss up to 0.075 nats
    # (87 %) above its recent best, and a training loss fitted to ~0.002 has epochs at 0.07–0.13 (up to
    # 80× its best): without floors those read as drift level 1–3 and a critical explosion, and the
    # rollbacks asked for replayed the noise. A rise below its floor (nats) reads as calm.
    loss_drift_floor: float = 0.1  # validation loss rise above its recent best, nats
    loss_explosion_floor: float = 0.25  # training loss rise above its best, nats (Tolaria's guard: 0.25)

    def __post_init__(self) -> None:
        for spec in fields(self):
            values = getattr(self, spec.name)
            if spec.name in FLOORS:
                if not 0.0 <= values < math.inf:
                    raise ValueError(f"{spec.name} must be a non-negative number of nats, got {values}")
            elif len(values) != MAX_LEVEL or list(values) != sorted(values):
                raise ValueError(f"risk thresholds for {spec.name} must be 4 ascending values, got {values}")


@dataclass(frozen=True)
class RiskAssessment:
    level: int  # raw level of this window, 0–4
    signal_levels: dict[str, int]

    @property
    def loss_level(self) -> int:
        return max(self.signal_levels["loss_explosion"], self.signal_levels["loss_drift"])

    @property
    def dominant(self) -> str:
        """The signal that set the level (the first such, in declaration order)."""
        return max(self.signal_levels, key=lambda name: self.signal_levels[name])


class RiskAction(enum.Enum):
    PROCEED = "proceed"
    MITIGATE = "mitigate"
    BLOCK = "block"
    ROLLBACK = "rollback"


def signal_level(value: float, thresholds: Thresholds) -> int:
    if not math.isfinite(value):
        return MAX_LEVEL
    return sum(1 for threshold in thresholds if value >= threshold)


def assess(signals: RiskSignals, thresholds: RiskThresholds) -> RiskAssessment:
    levels = {
        spec.name: signal_level(getattr(signals, spec.name), getattr(thresholds, spec.name))
        for spec in fields(signals)
    }
    return RiskAssessment(max(levels.values()), levels)


def effective_level(recent_raw_levels: Sequence[int]) -> int:
    """The hysteresis: the highest raw level of the last HYSTERESIS_WINDOWS windows."""
    window = recent_raw_levels[-HYSTERESIS_WINDOWS:]
    return max(window) if window else 0


def action_for(level: int, loss_level: int, block_level: int = 3, rollback_level: int = 4) -> RiskAction:
    """What to do at an effective level, given this window's level of the loss signals alone."""
    if loss_level >= rollback_level:
        return RiskAction.ROLLBACK
    if level >= block_level:
        return RiskAction.BLOCK
    if level >= 1:
        return RiskAction.MITIGATE
    return RiskAction.PROCEED


def to_pb_level(level: int) -> pb.RiskLevel:
    """Risk levels 0–4 are stored as RiskLevel - 1 (GREEN = level 0)."""
    return cast(pb.RiskLevel, min(max(level, 0), MAX_LEVEL) + 1)


def from_pb_level(level: int) -> int:
    return max(0, level - 1)


def lifecycle_signal(seeds: Iterable[pb.SeedState]) -> float:
    score = 0.0
    for seed in seeds:
        weight = ACTIVE_STAGE_WEIGHTS.get(seed.stage, 0.0)
        if weight:
            score += weight + max(0.0, seed.risk)
        score += ISOLATION_VIOLATION_WEIGHT * seed.metrics.get(ISOLATION_METRIC, 0.0)
        if not math.isfinite(seed.gradient_norm):
            return math.inf
    return score


def ratio(value: float, reference: float) -> float:
    """value / reference for positive reference; a non-finite value stays non-finite."""
    if not math.isfinite(value):
        return math.inf
    if reference <= 0.0 or not math.isfinite(reference):
        return 1.0
    return value / reference
