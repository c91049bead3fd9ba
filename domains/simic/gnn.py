"""Tamiyo's GNN policy as a `ppo.ActorCritic`, and a PPO update on episodes rebuilt from the log.

The policy's own masked evaluation (`domains.tamiyo.gnn.sampling.evaluate`: float32 logits, illegal
actions at -1e9, the factored log-probability operation + slot + blueprint) gives the log-probabilities;
the heads take part where they applied: the operation always, the slot unless the action is the no-op,
the blueprint on a germination. Values are the network's action-independent V(s).

`learn` turns episodes into one `ppo.Batch`: graphs rebuilt from each DecisionMade (every blueprint it
names must be registered in the log, or the batch is refused), the behaviour
log-probabilities as logged (the ratio's denominator), the current network's own log-probabilities of the
same actions (the KL early stop's reference, `ppo.update`), V(s) of the current network, and GAE per
episode (a rollback's dead end is a
one-step terminal episode), then runs `ppo.update` and, with `value_epochs`, the value phase
(`ppo.fit_value`: the value head alone on the pooled graph features after the update).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch_geometric.data import HeteroData

from domains.simic import metrics
from domains.simic.experience import Episode, Transition
from domains.simic.ope import LoggedEpisode
from domains.simic.ppo import (
    Batch,
    Diagnostics,
    Evaluation,
    PPOConfig,
    fit_value,
    gae,
    masked_log_softmax,
    update,
)
from domains.simic.reward_model import cross_fitted
from domains.tamiyo.gnn.graph import decision_graph
from domains.tamiyo.gnn.masking import GERMINATE, NOOP
from domains.tamiyo.gnn.network import PolicyNetwork
from domains.tamiyo.gnn.sampling import evaluate
from domains.tamiyo.gnn.tensors import PolicyGraph, collate
from leyline import pb

HEADS = ("operation", "slot", "blueprint")


class GnnActorCritic:
    def __init__(self, network: PolicyNetwork) -> None:
        self.network = network

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:
        return self.network.parameters(recurse)

    def evaluate(self, observations: Sequence[PolicyGraph | HeteroData], actions: torch.Tensor) -> Evaluation:
        batch = collate(observations)
        operation, slot, blueprint = actions.unbind(1)
        out = evaluate(self.network, batch, operation, slot, blueprint)
        entropy = {head: out[f"entropy_{head}"] for head in HEADS}
        return Evaluation(out["log_prob"], out["value"], entropy, active_heads(operation))


def active_heads(operation: torch.Tensor) -> dict[str, torch.Tensor]:
    """Where each head took part in the actions of these operations."""
    return {
        "operation": torch.ones_like(operation, dtype=torch.bool),
        "slot": operation != NOOP,
        "blueprint": operation == GERMINATE,
    }


def _segments(episodes: Sequence[Episode]) -> list[tuple[Transition, ...]]:
    segments: list[tuple[Transition, ...]] = []
    for episode in episodes:
        segments.append(episode.transitions)
        segments.extend((dead,) for dead in episode.dead_ends)
    return segments


def ppo_batch(
    network: PolicyNetwork,
    episodes: Sequence[Episode],
    descriptors: Sequence[pb.BlueprintDescriptor],
    config: PPOConfig,
) -> Batch[PolicyGraph]:
    known = {d.blueprint_id for d in descriptors}
    graphs: list[PolicyGraph] = []
    actions: list[torch.Tensor] = []
    log_probs: list[float] = []
    values, advantages, returns, start_log_probs = [], [], [], []
    for segment in _segments(episodes):
        for t in segment:  # absent is not zero: default features would change every probability
            missing = set(t.decision.observation.catalogue) - known
            if missing:
                raise ValueError(
                    f"decision at log position {t.position} names unregistered {sorted(missing)}"
                )
        segment_graphs = [decision_graph(t.decision, descriptors) for t in segment]
        segment_actions = torch.tensor([t.action for t in segment], dtype=torch.long).reshape(-1, 3)
        with torch.no_grad():
            now = GnnActorCritic(network).evaluate(segment_graphs, segment_actions)
        value = now.value.float()
        rewards = torch.tensor([t.reward.total for t in segment], dtype=torch.float32)
        ends = torch.zeros(len(segment), dtype=torch.bool)
        ends[-1] = True
        advantage, target = gae(rewards, value, ends, torch.zeros(()), config)
        graphs.extend(segment_graphs)
        actions.append(segment_actions)
        log_probs.extend(t.log_prob for t in segment)
        start_log_probs.append(now.log_prob.float())
        values.append(value)
        advantages.append(advantage)
        returns.append(target)
    return Batch(
        observations=graphs,
        actions=torch.cat(actions) if actions else torch.zeros((0, 3), dtype=torch.long),
        log_probs=torch.tensor(log_probs, dtype=torch.float32),
        values=torch.cat(values) if values else torch.zeros(0),
        advantages=torch.cat(advantages) if advantages else torch.zeros(0),
        returns=torch.cat(returns) if returns else torch.zeros(0),
        start_log_probs=torch.cat(start_log_probs) if start_log_probs else torch.zeros(0),
    )


def learn(
    network: PolicyNetwork,
    optimizer: torch.optim.Optimizer,
    episodes: Sequence[Episode],
    descriptors: Sequence[pb.BlueprintDescriptor],
    config: PPOConfig,
    generator: torch.Generator,
) -> Diagnostics:
    """One PPO update of `network` on `episodes` (train mode during the update, eval mode after)."""
    began = time.perf_counter()
    batch = ppo_batch(network, episodes, descriptors, config)
    network.train()
    try:
        diagnostics = update(GnnActorCritic(network), optimizer, batch, config, generator)
        head = [p for p in network.value_head.parameters() if p.requires_grad]  # none under LoRA
        if config.value_epochs > 0 and head and len(batch) > 0:
            with torch.no_grad():
                _, pooled = network.encode(collate(batch.observations))
            loss, explained = fit_value(
                lambda features: network.value_head(features).squeeze(1),
                head,
                pooled,
                batch.returns,
                config,
                generator,
            )
            diagnostics = dataclasses.replace(
                diagnostics, value_loss_after=loss, explained_variance_after=explained
            )
    finally:
        network.eval()
    metrics.UPDATES.inc()
    metrics.UPDATE_SECONDS.observe(time.perf_counter() - began)
    metrics.TRANSITIONS.inc(len(batch))
    metrics.EXPLAINED_VARIANCE.set(diagnostics.explained_variance)
    metrics.APPROX_KL.set(diagnostics.approx_kl)
    for name, entropy in diagnostics.entropy.items():
        metrics.HEAD_ENTROPY.labels(head=name).set(entropy)
    return diagnostics


def logged_episodes(
    network: PolicyNetwork, episodes: Sequence[Episode], descriptors: Sequence[pb.BlueprintDescriptor]
) -> list[LoggedEpisode]:
    """Each episode's main line with the behaviour's logged log-probabilities and `network`'s own of the
    same actions, its return and per-decision rewards without the shaping term (`reward.run_return`, as
    the gate compares), and the cross-fitted reward model's Q̂ and V̂ (domains/simic/reward_model.py)."""
    features, operations, rewards, op_probs, targets = [], [], [], [], []
    for episode in episodes:
        transitions = episode.transitions
        batch = collate([decision_graph(t.decision, descriptors) for t in transitions])
        actions = torch.tensor([t.action for t in transitions], dtype=torch.long).reshape(-1, 3)
        with torch.no_grad():
            operation, slot, blueprint = actions.unbind(1)
            targets.append(evaluate(network, batch, operation, slot, blueprint)["log_prob"])
            logits = network(batch)["operation"]
            op_probs.append(torch.softmax(masked_log_softmax(logits, batch.legal_op), dim=1))
        features.append(batch.u)
        operations.append(operation)
        rewards.append([t.reward.total - t.reward.shaping for t in transitions])
    model = cross_fitted(features, operations, rewards, op_probs)
    return [
        LoggedEpisode(
            episode.summary["total"] - episode.summary["shaping"],
            tuple(t.log_prob for t in episode.transitions),
            tuple(float(v) for v in target),
            tuple(reward),
            q_hat,
            v_hat,
        )
        for episode, target, reward, (q_hat, v_hat) in zip(episodes, targets, rewards, model, strict=True)
    ]
