"""The doubly robust estimate's reward model: a ridge Q̂ per operation, cross-fitted over episodes."""

from __future__ import annotations

import torch

from domains.simic.reward_model import OPERATIONS, cross_fitted, returns_to_go


def synthetic(n: int, seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor], list[list[float]]]:
    """Episodes of 4 decisions whose return to go is 2·u₀ + 0.5·[germinate] (u₀ the first feature)."""
    generator = torch.Generator().manual_seed(seed)
    u, operations, rewards = [], [], []
    for _ in range(n):
        features = torch.randn(4, 12, generator=generator)
        operation = torch.randint(0, OPERATIONS, (4,), generator=generator)
        to_go = (2.0 * features[:, 0] + 0.5 * (operation == 1).float()).tolist()
        u.append(features)
        operations.append(operation)
        rewards.append([to_go[t] - (to_go[t + 1] if t < 3 else 0.0) for t in range(4)])
    return u, operations, rewards


def test_returns_to_go_sum_what_follows() -> None:
    assert returns_to_go([1.0, 2.0, 3.0]) == [6.0, 5.0, 3.0]


def test_the_model_predicts_held_out_returns_and_values_mix_operations_by_probability() -> None:
    u, operations, rewards = synthetic(80, seed=0)
    uniform = [torch.full((4, OPERATIONS), 1.0 / OPERATIONS) for _ in u]
    fitted = cross_fitted(u, operations, rewards, uniform)
    errors = [
        abs(q - g)
        for (q_hat, _), r in zip(fitted, rewards, strict=True)
        for q, g in zip(q_hat, returns_to_go(r), strict=True)
    ]
    assert max(errors) < 0.2  # predicted from the other fold
    germinate = [torch.eye(OPERATIONS)[1].repeat(4, 1) for _ in u]
    always = cross_fitted(u, operations, rewards, germinate)
    lifted = [
        after - before
        for (_, mixed), (_, germinating) in zip(fitted, always, strict=True)
        for before, after in zip(mixed, germinating, strict=True)
    ]
    assert all(abs(d - 0.5 * (1 - 1 / OPERATIONS)) < 0.1 for d in lifted)


def test_an_episodes_own_return_never_enters_its_prediction() -> None:
    u, operations, rewards = synthetic(10, seed=1)
    probabilities = [torch.full((4, OPERATIONS), 1.0 / OPERATIONS) for _ in u]
    before = cross_fitted(u, operations, rewards, probabilities)
    changed = [[r + 5.0 for r in rewards[0]], *rewards[1:]]
    after = cross_fitted(u, operations, changed, probabilities)
    assert after[0] == before[0] and after[1] != before[1]


def test_no_episodes_fit_nothing() -> None:
    """A policy validated under a training name with no runs in the log has no logged episodes."""
    assert cross_fitted([], [], [], []) == []
