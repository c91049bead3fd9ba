"""The proof that the PPO is right: the same `ppo.update` solves CartPole-v1 (greedy return ≥ 475 on
three consecutive greedy episodes) within 30k environment steps on at least 4 of 5 seeds."""

from __future__ import annotations

import pytest

from domains.simic.cartpole import CartPoleConfig, steps_to_solve


@pytest.mark.slow
def test_ppo_solves_cartpole_on_four_of_five_seeds() -> None:
    config = CartPoleConfig(max_steps=30_000)
    steps = [steps_to_solve(seed, config) for seed in range(5)]
    solved = [s for s in steps if s is not None]
    assert len(solved) >= 4, steps
    assert all(s <= 30_000 for s in solved)
