"""Proximal policy optimisation in one module (the CleanRL layout: every hyperparameter in `PPOConfig`).

The algorithm, generic over `ActorCritic` (anything that evaluates logged actions on a list of
observations), so the same code trains CartPole's MLP and Tamiyo's GNN:

1. `gae`: generalised advantage estimation, A_t = δ_t + γλ(1 − end_t) A_{t+1} with
   δ_t = r_t + γ(1 − end_t) V_{t+1} − V_t (λ 0.95, γ 0.99); returns = A + V.
2. `update`: `epochs` passes over shuffled minibatches; per minibatch the advantages are normalised, the
   loss is the clipped-ratio surrogate + `value_coef` × squared value error − `entropy_coef` × the mean
   entropy of every head (each head averaged where it took part in the action); gradients are clipped to
   `max_grad_norm`. A minibatch whose approximate KL to the policy the update started from exceeds
   `target_kl` stops the update before its step (KL early stop). On-policy that policy is the behaviour
   policy; off-policy (`Batch.start_log_probs`: an ε-heuristic's decisions, or older rounds' in the
   replay buffer) the ratio still weighs each action by the behaviour's probability, but the stop
   measures how far this update moved the policy, not how far the behaviour was from it.
3. Every update returns its `Diagnostics`: policy and value loss, entropy per head, approximate KL, clip
   fraction, explained variance (of the values the batch was built with, before the update).
4. `fit_value` (`value_epochs` > 0): a value phase after the update (as in phasic policy gradient):
   `value_epochs` passes of minibatch regression of the value head alone on the batch's returns, from
   the shared features computed once (the encoder is not touched, so the policy, its KL and its entropy
   do not move), with its own Adam at `value_learning_rate`. The joint update alone gives the value head
   a handful of clipped steps per round, and the KL early stop cuts those short too.

Invalid actions are masked in the policy's logits (`masked_log_softmax`: float32, a finite -1e9 so an
all-masked head gives no NaN); a factored action's log-probability is the sum of its heads' terms.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Generic, NamedTuple, Protocol, TypeVar

import torch
from torch import nn

NEG = -1e9
Obs = TypeVar("Obs")
Obs_contra = TypeVar("Obs_contra", contravariant=True)


@dataclass(frozen=True)
class PPOConfig:
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    learning_rate: float = 2.5e-4
    adam_eps: float = 1e-5
    epochs: int = 4
    minibatches: int = 4
    value_coef: float = 0.5
    entropy_coef: float = 0.01  # per head
    max_grad_norm: float = 0.5
    target_kl: float | None = 0.03
    normalize_advantages: bool = True
    value_epochs: int = 0  # passes of the value phase after each update (`fit_value`; 0: none)
    value_learning_rate: float = 1e-3

    def to_dict(self) -> dict[str, float | int | bool | None]:
        return asdict(self)


class Evaluation(NamedTuple):
    log_prob: torch.Tensor  # [N] log-probability of each logged action under the current weights
    value: torch.Tensor  # [N] V(s)
    entropy: dict[str, torch.Tensor]  # head -> [N]
    active: dict[str, torch.Tensor]  # head -> [N] bool: the head took part in the action


class ActorCritic(Protocol[Obs_contra]):
    def evaluate(self, observations: Sequence[Obs_contra], actions: torch.Tensor) -> Evaluation: ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...


@dataclass(frozen=True)
class Batch(Generic[Obs]):
    """Transitions ready for an update: behaviour log-probabilities, values, advantages and returns."""

    observations: Sequence[Obs]
    actions: torch.Tensor  # [N, A] long
    log_probs: torch.Tensor  # [N] under the behaviour policy (the ratio's denominator)
    values: torch.Tensor  # [N]
    advantages: torch.Tensor  # [N]
    returns: torch.Tensor  # [N]
    # [N] under the policy being updated, before the update (the KL early stop's reference); None: the
    # behaviour's `log_probs` (on-policy)
    start_log_probs: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.observations)


@dataclass(frozen=True)
class Diagnostics:
    policy_loss: float
    value_loss: float
    entropy: dict[str, float]
    approx_kl: float
    clip_fraction: float
    explained_variance: float
    minibatch_steps: int
    stopped_early: bool
    value_loss_after: float = math.nan  # after the value phase (`fit_value`); NaN without one
    explained_variance_after: float = math.nan

    def to_dict(self) -> dict[str, float]:
        flat = {k: float(v) for k, v in asdict(self).items() if k != "entropy"}
        flat.update({f"entropy_{head}": value for head, value in self.entropy.items()})
        return flat


def masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Log-probabilities in float32 with illegal entries at ~-1e9 (probability exactly 0)."""
    return torch.log_softmax(logits.float().masked_fill(~mask, NEG), dim=-1)


def entropy_of(log_probs: torch.Tensor) -> torch.Tensor:
    return -(log_probs.exp() * log_probs).sum(dim=-1)


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    ends: torch.Tensor,
    last_value: torch.Tensor,
    config: PPOConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns [T, ...] from rewards, values and `ends` (the episode ended after step t);
    `last_value` is V of the observation after the last step (ignored where that step ended an episode)."""
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(last_value)
    following = last_value
    for t in reversed(range(rewards.shape[0])):
        alive = 1.0 - ends[t].float()
        delta = rewards[t] + config.gamma * following * alive - values[t]
        running = delta + config.gamma * config.gae_lambda * alive * running
        advantages[t] = running
        following = values[t]
    return advantages, advantages + values


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    variance = float(target.var(unbiased=False))
    if variance == 0.0:
        return float("nan")
    return 1.0 - float((target - predicted).var(unbiased=False)) / variance


def make_optimizer(policy: ActorCritic[Obs], config: PPOConfig) -> torch.optim.Adam:
    trainable = [p for p in policy.parameters() if p.requires_grad]
    return torch.optim.Adam(trainable, lr=config.learning_rate, eps=config.adam_eps)


def masked_mean(values: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """The mean of `values` where `active` (0 where nothing is)."""
    weight = active.float()
    return (values * weight).sum() / weight.sum().clamp(min=1.0)


def update(
    policy: ActorCritic[Obs],
    optimizer: torch.optim.Optimizer,
    batch: Batch[Obs],
    config: PPOConfig,
    generator: torch.Generator,
) -> Diagnostics:
    """One PPO update over `batch`; the shuffling draws from `generator` only (deterministic for a seed)."""
    size = len(batch)
    minibatch = max(1, -(-size // config.minibatches))  # ceil: `minibatches` minibatches per epoch
    params = [p for group in optimizer.param_groups for p in group["params"]]
    sums: dict[str, float] = {"policy": 0.0, "value": 0.0, "kl": 0.0, "clip": 0.0}
    entropy_totals: dict[str, tuple[float, int]] = {}
    steps = evaluated = 0
    stopped = False
    reference = batch.log_probs if batch.start_log_probs is None else batch.start_log_probs
    for _ in range(config.epochs):
        order = torch.randperm(size, generator=generator)
        for start in range(0, size, minibatch):
            index = order[start : start + minibatch]
            out = policy.evaluate([batch.observations[i] for i in index.tolist()], batch.actions[index])
            log_ratio = out.log_prob - batch.log_probs[index]
            ratio = log_ratio.exp()
            with torch.no_grad():
                moved = out.log_prob - reference[index]
                approx_kl = float(((moved.exp() - 1) - moved).mean())
                clipped = float(((ratio - 1).abs() > config.clip).float().mean())
            sums["kl"] += approx_kl
            evaluated += 1
            if config.target_kl is not None and approx_kl > config.target_kl:
                stopped = True
                break
            advantages = batch.advantages[index]
            if config.normalize_advantages and len(index) > 1:
                advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
            surrogate = torch.max(
                -advantages * ratio, -advantages * ratio.clamp(1 - config.clip, 1 + config.clip)
            ).mean()
            value_loss = 0.5 * (out.value - batch.returns[index]).pow(2).mean()
            entropies = {head: masked_mean(e, out.active[head]) for head, e in out.entropy.items()}
            entropy_bonus = torch.stack(list(entropies.values())).sum() if entropies else torch.zeros(())
            loss = surrogate + config.value_coef * value_loss - config.entropy_coef * entropy_bonus
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            steps += 1
            sums["policy"] += float(surrogate.detach())
            sums["value"] += float(value_loss.detach())
            sums["clip"] += clipped
            for head, value in entropies.items():  # a head's mean over the minibatches it took part in
                if bool(out.active[head].any()):
                    total, seen = entropy_totals.get(head, (0.0, 0))
                    entropy_totals[head] = (total + float(value.detach()), seen + 1)
        if stopped:
            break
    count = max(steps, 1)
    return Diagnostics(
        policy_loss=sums["policy"] / count,
        value_loss=sums["value"] / count,
        entropy={head: total / seen for head, (total, seen) in entropy_totals.items()},
        approx_kl=sums["kl"] / max(evaluated, 1),
        clip_fraction=sums["clip"] / count,
        explained_variance=explained_variance(batch.values, batch.returns),
        minibatch_steps=steps,
        stopped_early=stopped,
    )


def fit_value(
    predict: Callable[[torch.Tensor], torch.Tensor],
    parameters: Sequence[nn.Parameter],
    features: torch.Tensor,
    returns: torch.Tensor,
    config: PPOConfig,
    generator: torch.Generator,
) -> tuple[float, float]:
    """The value phase: `predict(features[i])` (the value head on fixed features) regressed on `returns`
    for `config.value_epochs` shuffled passes of `config.minibatches` minibatches, only `parameters`
    updated; returns the mean squared error / 2 and the explained variance after it."""
    size = features.shape[0]
    if size == 0 or config.value_epochs <= 0:
        return math.nan, math.nan
    features = features.detach()
    optimizer = torch.optim.Adam(parameters, lr=config.value_learning_rate, eps=config.adam_eps)
    minibatch = max(1, -(-size // config.minibatches))
    for _ in range(config.value_epochs):
        order = torch.randperm(size, generator=generator)
        for start in range(0, size, minibatch):
            index = order[start : start + minibatch]
            loss = 0.5 * (predict(features[index]) - returns[index]).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
            optimizer.step()
    with torch.no_grad():
        predicted = predict(features)
        error = 0.5 * float((predicted - returns).pow(2).mean())
    return error, explained_variance(predicted, returns)
