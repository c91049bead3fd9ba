"""The correctness check of `ppo`: the same update solves gymnasium's CartPole-v1 (greedy return ≥ 475).

A CleanRL-style actor-critic (two 64-unit tanh layers each, orthogonal initialisation) collects
`envs × rollout` steps from separate CartPole environments, then runs `ppo.update`. After every update the
greedy policy plays an evaluation episode; it is solved when `GREEDY_EPISODES` consecutive greedy episodes
each return at least `SOLVED_RETURN`. gymnasium is a development/benchmark dependency: import this module
only from tests and `esper bench learning`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from domains.simic.ppo import (
    Batch,
    Evaluation,
    PPOConfig,
    entropy_of,
    gae,
    make_optimizer,
    masked_log_softmax,
    update,
)

SOLVED_RETURN = 475.0
GREEDY_EPISODES = 3
ENV_ID = "CartPole-v1"


@dataclass(frozen=True)
class CartPoleConfig:
    envs: int = 4
    rollout: int = 128
    max_steps: int = 30_000
    ppo: PPOConfig = field(default_factory=lambda: PPOConfig(learning_rate=1e-3))


def _layer(inputs: int, outputs: int, gain: float) -> nn.Linear:
    layer = nn.Linear(inputs, outputs)
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class CartPolePolicy(nn.Module):
    """Actor and critic MLPs; one categorical head ("action") with an all-true availability mask."""

    def __init__(self, observations: int = 4, actions: int = 2) -> None:
        super().__init__()
        root2 = math.sqrt(2)
        self.actor = nn.Sequential(
            _layer(observations, 64, root2),
            nn.Tanh(),
            _layer(64, 64, root2),
            nn.Tanh(),
            _layer(64, actions, 0.01),
        )
        self.critic = nn.Sequential(
            _layer(observations, 64, root2), nn.Tanh(), _layer(64, 64, root2), nn.Tanh(), _layer(64, 1, 1.0)
        )

    def log_probs(self, observations: torch.Tensor) -> torch.Tensor:
        logits = self.actor(observations)
        return masked_log_softmax(logits, torch.ones_like(logits, dtype=torch.bool))

    def value(self, observations: torch.Tensor) -> torch.Tensor:
        return self.critic(observations).squeeze(-1)

    def evaluate(self, observations: Sequence[torch.Tensor], actions: torch.Tensor) -> Evaluation:
        stacked = torch.stack(list(observations))
        log_probs = self.log_probs(stacked)
        taken = log_probs.gather(1, actions[:, :1]).squeeze(1)
        entropy = entropy_of(log_probs)
        return Evaluation(
            taken, self.value(stacked), {"action": entropy}, {"action": torch.ones_like(taken).bool()}
        )


def greedy_return(policy: CartPolePolicy, seed: int) -> float:
    env = gym.make(ENV_ID)
    observation, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        with torch.no_grad():
            action = int(policy.log_probs(torch.as_tensor(observation, dtype=torch.float32)).argmax())
        observation, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        done = terminated or truncated
    env.close()
    return total


def solved(policy: CartPolePolicy, seed: int) -> bool:
    return all(
        greedy_return(policy, 10_000 + seed * 100 + k) >= SOLVED_RETURN for k in range(GREEDY_EPISODES)
    )


def steps_to_solve(seed: int, config: CartPoleConfig | None = None) -> int | None:
    """Environment steps until the greedy policy is solved, or None within `config.max_steps`."""
    config = config or CartPoleConfig()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        policy = CartPolePolicy()
    optimizer = make_optimizer(policy, config.ppo)
    generator = torch.Generator().manual_seed(seed)
    envs = [gym.make(ENV_ID) for _ in range(config.envs)]
    current = torch.tensor(
        np.stack([env.reset(seed=seed * 1000 + i)[0] for i, env in enumerate(envs)]), dtype=torch.float32
    )
    steps = 0
    try:
        while steps < config.max_steps:
            observations, actions, log_probs, values, rewards, ends = [], [], [], [], [], []
            for _ in range(config.rollout):
                with torch.no_grad():
                    logp = policy.log_probs(current)
                    action = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(1)
                    values.append(policy.value(current))
                observations.append(current)
                actions.append(action)
                log_probs.append(logp.gather(1, action.unsqueeze(1)).squeeze(1))
                step_rewards, step_ends, following = [], [], []
                for env, a in zip(envs, action.tolist(), strict=True):
                    observation, reward, terminated, truncated, _ = env.step(a)
                    if terminated or truncated:
                        observation, _ = env.reset()
                    step_rewards.append(float(reward))
                    step_ends.append(terminated or truncated)
                    following.append(observation)
                rewards.append(torch.tensor(step_rewards))
                ends.append(torch.tensor(step_ends))
                current = torch.tensor(np.stack(following), dtype=torch.float32)
            steps += config.rollout * config.envs
            with torch.no_grad():
                last_value = policy.value(current)
            value_t = torch.stack(values)
            advantages, returns = gae(
                torch.stack(rewards), value_t, torch.stack(ends), last_value, config.ppo
            )
            batch = Batch(
                observations=list(torch.cat(observations)),
                actions=torch.cat(actions).unsqueeze(1),
                log_probs=torch.cat(log_probs),
                values=value_t.reshape(-1),
                advantages=advantages.reshape(-1),
                returns=returns.reshape(-1),
            )
            update(policy, optimizer, batch, config.ppo, generator)
            if solved(policy, seed):
                return steps
        return None
    finally:
        for env in envs:
            env.close()
