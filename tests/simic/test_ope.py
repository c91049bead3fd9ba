"""Off-policy estimates: SNIPS on a synthetic bandit with a known value, its bootstrap interval, the ESS."""

from __future__ import annotations

import math
import random
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from domains.simic.ope import (
    LoggedEpisode,
    effective_sample_size,
    estimate,
    snips_of,
    weighted_doubly_robust,
)
from domains.simic.reward import RewardConfig
from domains.tamiyo.gnn.network import PolicyNetwork
from eventstore.file import FileStore
from ops.policy_validate import off_policy_estimate

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
def test_snips_and_dr_lie_within_their_bootstrap_intervals(n: int, seed: int) -> None:
    result = estimate(with_model(bandit_log(n, seed), (0.5, 0.5)), seed=seed)
    assert result.low <= result.snips <= result.high
    assert result.dr_low <= result.dr <= result.dr_high


@given(st.integers(1, 500), st.floats(1e-3, 1e3))
def test_equal_weights_give_an_ess_of_n(n: int, weight: float) -> None:
    assert math.isclose(effective_sample_size([weight] * n), n, rel_tol=1e-9)


def test_without_episodes_the_estimate_is_nan() -> None:
    result = estimate([])
    assert math.isnan(result.snips) and result.ess == 0.0 and result.episodes == 0


def with_model(logged: list[LoggedEpisode], q_of_arm: tuple[float, float]) -> list[LoggedEpisode]:
    """The bandit's episodes with a reward model Q̂(arm) and V̂ = Σ π(arm) Q̂(arm) of the target."""
    value = sum(p * q for p, q in zip(TARGET, q_of_arm, strict=True))
    out = []
    for e in logged:
        arm = (
            0
            if math.isclose(e.behaviour_log_probs[0], math.log(BEHAVIOUR[0]))
            and math.isclose(e.target_log_probs[0], math.log(TARGET[0]))
            else 1
        )
        out.append(
            LoggedEpisode(
                e.ret, e.behaviour_log_probs, e.target_log_probs, (e.ret,), (q_of_arm[arm],), (value,)
            )
        )
    return out


def test_doubly_robust_recovers_the_value_and_a_good_model_narrows_its_interval() -> None:
    logged = bandit_log(400, seed=1)
    good = estimate(with_model(logged, ARM_MEANS), seed=0)
    assert abs(good.dr - TRUE_VALUE) < 0.06 and good.dr_low <= TRUE_VALUE <= good.dr_high
    assert good.dr_high - good.dr_low < good.high - good.low
    wrong = estimate(with_model(logged, (0.9, 0.1)), seed=0)  # a wrong model: the weighted residuals fix it
    assert abs(wrong.dr - TRUE_VALUE) < 0.08


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 60), st.integers(0, 10_000))
def test_without_a_model_and_with_terminal_rewards_of_equal_length_episodes_dr_is_snips(
    n: int, seed: int
) -> None:
    rng = random.Random(seed)
    logged = []
    steps = rng.randint(1, 5)  # of equal length: a shorter episode's reward is weighted by its prefix
    for _ in range(n):
        behaviour = tuple(math.log(rng.uniform(0.1, 1.0)) for _ in range(steps))
        target = tuple(math.log(rng.uniform(0.1, 1.0)) for _ in range(steps))
        logged.append(LoggedEpisode(rng.random(), behaviour, target))
    assert math.isclose(weighted_doubly_robust(logged), snips_of(logged), rel_tol=1e-9, abs_tol=1e-12)


def test_a_two_step_chain_pays_per_decision_rewards_at_their_step() -> None:
    # target and behaviour agree on every step: the estimate is the plain mean return, model or not
    episodes = [
        LoggedEpisode(1.5, (-0.5, -0.5), (-0.5, -0.5), (1.0, 0.5), (0.2, 0.1), (0.3, 0.4)),
        LoggedEpisode(0.5, (-0.2,), (-0.2,), (0.5,), (0.7,), (0.6,)),
    ]
    assert math.isclose(
        weighted_doubly_robust(episodes), 1.0 + (0.3 + 0.6) / 2 - (0.2 + 0.7) / 2 + 0.5 * (0.4 - 0.1)
    )


def test_a_training_name_without_runs_in_the_log_estimates_nan(tmp_path: Path) -> None:
    """`esper policy validate --name X` where the log holds no run X-r*: no logged episodes, a NaN
    estimate (not a failure inside the reward model's fit)."""
    with FileStore(tmp_path / "log") as store:
        result = off_policy_estimate(store, PolicyNetwork(), "nobody", RewardConfig())
    assert math.isnan(result.snips) and math.isnan(result.dr) and result.episodes == 0
