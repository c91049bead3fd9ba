"""Off-policy estimates of a candidate policy's value from logged episodes of another (behaviour) policy.

Each logged episode i has a return G_i and, per decision t, the behaviour's logged log-probability
log μ(a_t|s_t) and the candidate's log π(a_t|s_t) of the same action. Its importance weight is
w_i = Π_t π/μ (computed as exp of the summed log-ratios). Estimates:

- self-normalised importance sampling, SNIPS = Σ w_i G_i / Σ w_i (biased, consistent, bounded by the
  returns seen);
- the effective sample size ESS = (Σ w_i)² / Σ w_i² (n for equal weights, near 1 when one episode carries
  the weight: the estimate then says little);
- a percentile bootstrap interval of SNIPS, resampling episodes with a seeded generator.

Pure: no torch, no I/O; the log-probabilities come from the caller.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass

BOOTSTRAP_SAMPLES = 1000
CONFIDENCE = 0.90


@dataclass(frozen=True)
class LoggedEpisode:
    ret: float
    behaviour_log_probs: tuple[float, ...]
    target_log_probs: tuple[float, ...]

    @property
    def log_weight(self) -> float:
        return sum(self.target_log_probs) - sum(self.behaviour_log_probs)


@dataclass(frozen=True)
class Estimate:
    snips: float
    low: float
    high: float
    ess: float
    episodes: int
    behaviour_mean: float  # the logged returns' plain mean: what the behaviour policy got

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def normalised_weights(log_weights: Sequence[float]) -> list[float]:
    """Weights scaled so the largest is 1 (the estimates are invariant to a common factor; this keeps
    products of many ratios from overflowing)."""
    top = max(log_weights)
    return [math.exp(w - top) for w in log_weights]


def snips(weights: Sequence[float], returns: Sequence[float]) -> float:
    total = sum(weights)
    if total <= 0:
        return math.nan
    return sum(w * g for w, g in zip(weights, returns, strict=True)) / total


def effective_sample_size(weights: Sequence[float]) -> float:
    squares = sum(w * w for w in weights)
    return sum(weights) ** 2 / squares if squares > 0 else 0.0


def bootstrap_interval(
    weights: Sequence[float],
    returns: Sequence[float],
    seed: int = 0,
    samples: int = BOOTSTRAP_SAMPLES,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile interval of SNIPS over `samples` resamples of the episodes (with replacement)."""
    rng = random.Random(seed)
    n = len(weights)
    values = []
    for _ in range(samples):
        picks = [rng.randrange(n) for _ in range(n)]
        value = snips([weights[i] for i in picks], [returns[i] for i in picks])
        if math.isfinite(value):
            values.append(value)
    if not values:
        return math.nan, math.nan
    values.sort()
    tail = (1.0 - confidence) / 2
    return values[int(tail * (len(values) - 1))], values[math.ceil((1 - tail) * (len(values) - 1))]


def estimate(episodes: Sequence[LoggedEpisode], seed: int = 0) -> Estimate:
    """SNIPS of the candidate with its bootstrap interval and ESS; NaN figures without episodes."""
    if not episodes:
        return Estimate(math.nan, math.nan, math.nan, 0.0, 0, math.nan)
    weights = normalised_weights([e.log_weight for e in episodes])
    returns = [e.ret for e in episodes]
    low, high = bootstrap_interval(weights, returns, seed)
    return Estimate(
        snips(weights, returns),
        low,
        high,
        effective_sample_size(weights),
        len(episodes),
        sum(returns) / len(returns),
    )
