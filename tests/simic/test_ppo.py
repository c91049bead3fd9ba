"""PPO's parts: GAE against a hand computation, masked heads, an update's diagnostics and KL early stop."""

from __future__ import annotations

import dataclasses
import math

import torch

from domains.simic.cartpole import CartPolePolicy
from domains.simic.ppo import (
    Batch,
    PPOConfig,
    entropy_of,
    fit_value,
    gae,
    make_optimizer,
    masked_log_softmax,
    update,
)


def test_gae_matches_a_hand_computation_and_stops_at_episode_ends() -> None:
    config = PPOConfig(gamma=0.9, gae_lambda=0.5)
    rewards = torch.tensor([1.0, 2.0, 3.0])
    values = torch.tensor([0.5, 1.0, 1.5])
    ends = torch.tensor([False, True, False])
    advantages, returns = gae(rewards, values, ends, torch.tensor(2.0), config)
    a2 = 3.0 + 0.9 * 2.0 - 1.5
    a1 = 2.0 - 1.0  # the episode ended after step 1: no bootstrap, nothing flows back from step 2
    a0 = (1.0 + 0.9 * 1.0 - 0.5) + 0.9 * 0.5 * a1
    assert torch.allclose(advantages, torch.tensor([a0, a1, a2]))
    assert torch.allclose(returns, advantages + values)


def test_masked_heads_give_zero_probability_and_no_nan_when_all_masked() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], dtype=torch.float16)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    log_probs = masked_log_softmax(logits, mask)
    assert log_probs.dtype == torch.float32
    assert float(log_probs[0, 1].exp()) == 0.0
    assert math.isclose(float(log_probs[0].exp().sum()), 1.0, rel_tol=1e-6)
    assert torch.isfinite(entropy_of(log_probs)).all()


def _batch(policy: CartPolePolicy, size: int, seed: int) -> Batch[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    observations = torch.randn(size, 4, generator=generator)
    with torch.no_grad():
        log_probs = policy.log_probs(observations)
        values = policy.value(observations)
    actions = torch.multinomial(log_probs.exp(), 1, generator=generator)
    returns = torch.randn(size, generator=generator)
    return Batch(
        list(observations),
        actions,
        log_probs.gather(1, actions).squeeze(1),
        values,
        returns - values,
        returns,
    )


def test_an_update_reports_its_diagnostics_and_is_deterministic() -> None:
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        policy = CartPolePolicy()
        config = PPOConfig(target_kl=None)
        diagnostics = update(
            policy,
            make_optimizer(policy, config),
            _batch(policy, 64, 1),
            config,
            torch.Generator().manual_seed(2),
        )
        results.append((diagnostics, [p.detach().clone() for p in policy.parameters()]))
    diagnostics = results[0][0]
    assert diagnostics == results[1][0]
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1], strict=True))
    assert diagnostics.minibatch_steps == config.epochs * config.minibatches and not diagnostics.stopped_early
    assert set(diagnostics.to_dict()) >= {
        "policy_loss",
        "value_loss",
        "entropy_action",
        "approx_kl",
        "clip_fraction",
        "explained_variance",
    }
    assert 0.0 < diagnostics.entropy["action"] <= math.log(2) + 1e-6
    assert diagnostics.approx_kl >= 0.0 and 0.0 <= diagnostics.clip_fraction <= 1.0


def test_kl_early_stop_ends_the_update_before_a_step_that_moved_too_far() -> None:
    torch.manual_seed(0)
    policy = CartPolePolicy()
    config = PPOConfig(learning_rate=0.05, target_kl=1e-4, epochs=10)
    diagnostics = update(
        policy,
        make_optimizer(policy, config),
        _batch(policy, 64, 3),
        config,
        torch.Generator().manual_seed(0),
    )
    assert diagnostics.stopped_early
    assert 1 <= diagnostics.minibatch_steps < config.epochs * config.minibatches


def test_off_policy_the_kl_stop_measures_the_update_not_the_behaviour() -> None:
    """A mixed round's ε-heuristic took its actions with probability ~1 where the GNN gives them ~0.5: the
    behaviour is far from the policy (approximate KL ~0.2) before any step. Measured against the behaviour
    the stop fired on the first minibatch of every round (0 steps: the policy never changed); measured
    against the policy the update started from, the update runs, and still stops when it moves too far."""
    torch.manual_seed(0)
    policy = CartPolePolicy()
    on_policy = _batch(policy, 64, 4)
    heuristic = torch.full_like(on_policy.log_probs, math.log(0.99))
    off_policy = dataclasses.replace(on_policy, log_probs=heuristic, start_log_probs=on_policy.log_probs)
    config = PPOConfig()

    def steps(batch: Batch[torch.Tensor], config: PPOConfig) -> tuple[int, bool]:
        torch.manual_seed(0)
        fresh = CartPolePolicy()
        out = update(fresh, make_optimizer(fresh, config), batch, config, torch.Generator().manual_seed(0))
        return out.minibatch_steps, out.stopped_early

    assert steps(dataclasses.replace(off_policy, start_log_probs=None), config) == (0, True)
    assert steps(off_policy, config) == (config.epochs * config.minibatches, False)
    moved, stopped = steps(off_policy, dataclasses.replace(config, learning_rate=0.05, target_kl=1e-4))
    assert stopped and 1 <= moved < config.epochs * config.minibatches


def test_the_value_phase_fits_the_head_alone_and_reports_its_explained_variance() -> None:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(256, 8, generator=generator)
    returns = features @ torch.linspace(-1.0, 1.0, 8) + 0.05 * torch.randn(256, generator=generator)
    torch.manual_seed(0)
    encoder, head = torch.nn.Linear(8, 8), torch.nn.Linear(8, 1)
    frozen = {k: v.clone() for k, v in encoder.state_dict().items()}
    with torch.no_grad():
        hidden = encoder(features)
    config = PPOConfig(value_epochs=200, value_learning_rate=1e-2)
    before = 1.0 - float((head(hidden).squeeze(1) - returns).var() / returns.var())
    loss, explained = fit_value(
        lambda x: head(x).squeeze(1), list(head.parameters()), hidden, returns, config, generator
    )
    assert explained > 0.8 > before and math.isfinite(loss)
    assert all(torch.equal(frozen[k], v) for k, v in encoder.state_dict().items())
    assert math.isnan(
        fit_value(
            lambda x: head(x).squeeze(1), list(head.parameters()), hidden, returns, PPOConfig(), generator
        )[1]
    )
