"""Off-policy estimates of a candidate policy's value from logged episodes of another (behaviour) policy.

Each logged episode i has a return G_i = Σ_t r_{i,t} and, per decision t, the behaviour's logged
log-probability log μ(a_t|s_t) and the candidate's log π(a_t|s_t) of the same action. Its importance weight
is w_i = Π_t π/μ (computed as exp of the summed log-ratios); ρ_{i,t} = Π_{k≤t} π/μ is the weight up to t.

- self-normalised importance sampling, SNIPS = Σ w_i G_i / Σ w_i (biased, consistent, bounded by the
  returns seen);
- weighted doubly robust (Thomas and Brunskill, 2016), with a reward model fitted on the logged data
  (Q̂(s_t, a_t) of the logged action and V̂(s_t) = Σ_a π(a|s_t) Q̂(s_t, a), from the caller):

      DR = Σ_t Σ_i [ w̄_{i,t} (r_{i,t} − Q̂_{i,t}) + w̄_{i,t−1} V̂_{i,t} ],   w̄_{i,t} = ρ_{i,t} / Σ_j ρ_{j,t},

  w̄_{i,−1} = 1/n; an episode that has ended keeps its last weight with r = Q̂ = V̂ = 0. The model's
  prediction carries the estimate where it is right and the weighted residuals correct it where it is
  not; with Q̂ = V̂ = 0 it is per-decision weighted importance sampling (SNIPS when every reward comes at
  the end of episodes of one length);
- the effective sample size ESS = (Σ w_i)² / Σ w_i² (n for equal weights, near 1 when one episode carries
  the weight: the estimates then say little);
- percentile bootstrap intervals of both, resampling episodes with a seeded generator (the reward model is
  fitted once, not per resample).

Pure: numpy, no torch, no I/O; the log-probabilities and the reward model's predictions come from the caller.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

BOOTSTRAP_SAMPLES = 1000
CONFIDENCE = 0.90


@dataclass(frozen=True)
class LoggedEpisode:
    ret: float
    behaviour_log_probs: tuple[float, ...]
    target_log_probs: tuple[float, ...]
    rewards: tuple[float, ...] = ()  # per decision, summing to `ret`; empty: all of `ret` at the last one
    q_hat: tuple[float, ...] = ()  # the reward model's Q̂(s_t, a_t); empty: 0
    v_hat: tuple[float, ...] = ()  # the reward model's V̂(s_t) under the candidate; empty: 0

    @property
    def log_weight(self) -> float:
        return sum(self.target_log_probs) - sum(self.behaviour_log_probs)

    def step_rewards(self) -> tuple[float, ...]:
        if self.rewards:
            return self.rewards
        steps = len(self.target_log_probs)
        return tuple(self.ret if t == steps - 1 else 0.0 for t in range(steps))


@dataclass(frozen=True)
class Estimate:
    snips: float
    low: float
    high: float
    ess: float
    episodes: int
    behaviour_mean: float  # the logged returns' plain mean: what the behaviour policy got
    dr: float = math.nan  # weighted doubly robust, with its bootstrap interval
    dr_low: float = math.nan
    dr_high: float = math.nan

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


@dataclass(frozen=True)
class _Arrays:
    """The episodes as [n, H] arrays (padded past each episode's end) for fast resampling."""

    log_weight: np.ndarray  # [n]
    ret: np.ndarray  # [n]
    log_rho: np.ndarray  # [n, H] cumulative log-ratios, the last carried past the end
    residual: np.ndarray  # [n, H] r − Q̂
    v_hat: np.ndarray  # [n, H]

    @classmethod
    def of(cls, episodes: Sequence[LoggedEpisode]) -> _Arrays:
        horizon = max(len(e.target_log_probs) for e in episodes)
        n = len(episodes)
        log_rho, residual, v_hat = np.zeros((n, horizon)), np.zeros((n, horizon)), np.zeros((n, horizon))
        for i, e in enumerate(episodes):
            steps = len(e.target_log_probs)
            ratios = np.array(e.target_log_probs, dtype=np.float64) - np.array(e.behaviour_log_probs)
            cumulative = np.cumsum(ratios)
            log_rho[i, :steps] = cumulative
            log_rho[i, steps:] = cumulative[-1] if steps else 0.0
            q = np.array(e.q_hat or [0.0] * steps, dtype=np.float64)
            residual[i, :steps] = np.array(e.step_rewards(), dtype=np.float64) - q
            v_hat[i, :steps] = np.array(e.v_hat or [0.0] * steps, dtype=np.float64)
        return cls(
            np.array([e.log_weight for e in episodes]),
            np.array([e.ret for e in episodes]),
            log_rho,
            residual,
            v_hat,
        )

    def snips(self, picks: np.ndarray) -> float:
        log_weight = self.log_weight[picks]
        weights = np.exp(log_weight - log_weight.max())
        return float((weights * self.ret[picks]).sum() / weights.sum())

    def doubly_robust(self, picks: np.ndarray) -> float:
        log_rho = self.log_rho[picks]
        weights = np.exp(log_rho - log_rho.max(axis=0, keepdims=True))
        current = weights / weights.sum(axis=0, keepdims=True)
        previous = np.concatenate([np.full((len(picks), 1), 1.0 / len(picks)), current[:, :-1]], axis=1)
        return float((current * self.residual[picks]).sum() + (previous * self.v_hat[picks]).sum())


def snips_of(episodes: Sequence[LoggedEpisode]) -> float:
    if not episodes:
        return math.nan
    return _Arrays.of(episodes).snips(np.arange(len(episodes)))


def weighted_doubly_robust(episodes: Sequence[LoggedEpisode]) -> float:
    """The weighted doubly robust estimate (module docstring); NaN without episodes."""
    if not episodes:
        return math.nan
    return _Arrays.of(episodes).doubly_robust(np.arange(len(episodes)))


def bootstrap_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The percentile interval of the finite bootstrap `values`."""
    finite = sorted(v for v in values if math.isfinite(v))
    if not finite:
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2
    return finite[int(tail * (len(finite) - 1))], finite[math.ceil((1 - tail) * (len(finite) - 1))]


def estimate(episodes: Sequence[LoggedEpisode], seed: int = 0, samples: int = BOOTSTRAP_SAMPLES) -> Estimate:
    """SNIPS and weighted DR of the candidate with their bootstrap intervals, and the ESS; NaN figures
    without episodes."""
    if not episodes:
        return Estimate(math.nan, math.nan, math.nan, 0.0, 0, math.nan)
    arrays = _Arrays.of(episodes)
    n = len(episodes)
    rng = np.random.default_rng(seed)
    resamples = [rng.integers(0, n, n) for _ in range(samples)]  # the same resamples for both
    low, high = bootstrap_interval([arrays.snips(p) for p in resamples])
    dr_low, dr_high = bootstrap_interval([arrays.doubly_robust(p) for p in resamples])
    everything = np.arange(n)
    returns = [e.ret for e in episodes]
    return Estimate(
        arrays.snips(everything),
        low,
        high,
        effective_sample_size(normalised_weights([e.log_weight for e in episodes])),
        len(episodes),
        sum(returns) / len(returns),
        arrays.doubly_robust(everything),
        dr_low,
        dr_high,
    )
