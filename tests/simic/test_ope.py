"""Off-policy estimates: SNIPS on a synthetic bandit with a known value, its bootstrap interval, the ESS."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from domains.simic.ope import LoggedEpisode, effective_sample_size, estimate

ARM_MEANS = (0.2, 0.7)  # Bernoulli rewards
BEHAVIOUR = (0.5, 0.5)
TARGET = (0.2, 0.8)
TRUE_VALUE = sum(p * m for p, m in zip(TARGET, ARM_MEANS, strict=True))  # 0.6


def bandit_log(n: int, seed: int) -> list[LoggedEpisode]:
    rng = random.Random(seed)
    logged = []
    for _ in range(n):
        arm = 0 if rng.random() < BEHAVIOUR[0] else 1
        reward = 1.0 if rng.random() < ARM_MEANS[arm] else 0.0
        logged.append(LoggedEpisode(reward, (math.log(BEHAVIOUR[arm]),), (math.log(TARGET[arm]),)))
    return logged


def test_snips_recovers_the_known_value_of_the_target_policy() -> None:
    result = estimate(bandit_log(2000, seed=1), seed=0)
    assert abs(result.snips - TRUE_VALUE) < 0.05
    assert result.low <= TRUE_VALUE <= result.high
    assert abs(result.behaviour_mean - 0.45) < 0.05  # the logged policy's own value: 0.5·0.2 + 0.5·0.7
    assert 0 < result.ess < 2000  # unequal weights lose effective samples


@settings(max_examples=30, deadline=None)
@given(st.integers(20, 300), st.integers(0, 10_000))
def test_snips_lies_within_its_bootstrap_interval(n: int, seed: int) -> None:
    result = estimate(bandit_log(n, seed), seed=seed)
    assert result.low <= result.snips <= result.high


@given(st.integers(1, 500), st.floats(1e-3, 1e3))
def test_equal_weights_give_an_ess_of_n(n: int, weight: float) -> None:
    assert math.isclose(effective_sample_size([weight] * n), n, rel_tol=1e-9)


def test_without_episodes_the_estimate_is_nan() -> None:
    result = estimate([])
    assert math.isnan(result.snips) and result.ess == 0.0 and result.episodes == 0
