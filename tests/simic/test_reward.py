"""The reward: components add up to the total, shaping is potential-based, penalties land on one step."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from domains.simic.reward import (
    EpisodeOutcome,
    RewardConfig,
    StepOutcome,
    episode_rewards,
    episode_summary,
    run_return,
)

accuracy = st.floats(0.0, 1.0)
steps_strategy = st.lists(
    st.builds(StepOutcome, accuracy, st.booleans(), st.booleans()), min_size=1, max_size=12
)


@given(steps_strategy, accuracy, st.integers(1, 10_000), st.integers(0, 10_000))
def test_components_add_up_and_undiscounted_shaping_telescopes(
    steps: list[StepOutcome], final: float, base: int, added: int
) -> None:
    outcome = EpisodeOutcome(final, base, base + added)
    config = RewardConfig(gamma=1.0)
    rewards = episode_rewards(steps, outcome, config)
    for reward in rewards:
        parts = reward.to_dict()
        assert math.isclose(parts.pop("total"), sum(parts.values()), abs_tol=1e-12)
    summary = episode_summary(rewards)
    # with γ = 1 the shaping sums to −Φ(s_0): it cannot change which episode is better
    assert math.isclose(summary["shaping"], -steps[0].validation_accuracy, abs_tol=1e-9)
    assert math.isclose(summary["accuracy"], final)
    assert math.isclose(summary["parameter_rent"], -config.parameter_rent * math.log2((base + added) / base))
    assert math.isclose(summary["cull_penalty"], -config.cull_penalty * sum(s.culled for s in steps))
    assert math.isclose(
        summary["rollback_penalty"], -config.rollback_penalty * sum(s.rolled_back for s in steps)
    )
    assert math.isclose(summary["total"], sum(r.total for r in rewards), abs_tol=1e-9)


def test_the_outcome_is_paid_on_the_last_transition_only() -> None:
    steps = [StepOutcome(0.5), StepOutcome(0.6, culled=True), StepOutcome(0.7)]
    rewards = episode_rewards(steps, EpisodeOutcome(0.8, 1000, 1500), RewardConfig(shaping=0.0))
    assert [r.accuracy for r in rewards] == [0.0, 0.0, 0.8]
    assert [r.parameter_rent for r in rewards] == [0.0, 0.0, -0.01 * math.log2(1.5)]
    assert [r.cull_penalty for r in rewards] == [0.0, -0.01, 0.0]
    assert episode_rewards([], EpisodeOutcome(0.8, 1000, 1000), RewardConfig()) == []


def test_the_rent_is_paid_per_doubling_so_a_graft_that_buys_one_point_per_doubling_breaks_even() -> None:
    config = RewardConfig(shaping=0.0)

    def rent(base: int, final: int) -> float:
        [reward] = episode_rewards([StepOutcome(0.5)], EpisodeOutcome(0.8, base, final), config)
        return reward.parameter_rent

    assert rent(384, 384) == 0.0
    assert math.isclose(rent(384, 768), -0.01) and math.isclose(rent(10_000, 20_000), -0.01)
    # a held-out digits graft the price is set by (domains/simic/reward.py): +1750 on a 384-parameter host
    # for 0.777 -> 0.866 validation accuracy pays; growth that buys 1 point per doubling breaks even
    paying = EpisodeOutcome(0.866, 384, 2134)
    assert run_return(paying, 0, 0, config) > run_return(EpisodeOutcome(0.777, 384, 384), 0, 0, config)
    even = EpisodeOutcome(0.777 + 0.01 * paying.doublings, 384, 2134)
    assert math.isclose(run_return(even, 0, 0, config), 0.777)
