"""Behaviour cloning: a warm start for PPO, the GNN policy fitted to the heuristic's logged decisions.

An untrained GNN almost never grows (a germination has probability ~1e-3, its blueprint uniform over the
catalogue), and PPO cannot learn growth from the heuristic's logged grafts either: their importance
weights π_gnn/π_heuristic are ~1e-3. Cloning the heuristic first gives PPO a policy that grows as the
heuristic does; PPO then keeps what pays (prunes grafts that do not, picks other blueprints and slots).

The demonstrations come from the log only: the transitions of ε-heuristic episodes (experience.py: each
DecisionMade with the PolicyObservation the GNN would have seen and the factored action), kept where the
action is the heuristic's own choice. Under ε-exploration the heuristic's choice has probability
≥ 1 − ε and an exploring draw that differs from it ≤ ε, so with ε < 0.5 a logged probability
≥ `CloneConfig.min_probability` (0.5) marks the heuristic's own decisions; the exploring draws only
widen the states it is seen deciding in.

`clone` minimises, over `epochs` shuffled passes of `minibatches` minibatches, the sum over heads of the
mean cross-entropy of the logged choice, each head where it took part (operation always, slot unless
the no-op, blueprint on a germination), masked as PPO's (`sampling.evaluate`: illegal actions at
-1e9), minus `entropy_coef` × the heads' mean entropy (a clone of a deterministic teacher would
otherwise collapse each head onto one choice, and PPO could no longer explore). Gradients are clipped;
the shuffling draws from the caller's generator only, so a clone from a copy of the log is bit-identical
on CPU. `CloneDiagnostics` (per head: cross-entropy and accuracy, the logged choice being the head's most
probable, before and after; entropy after) is recorded with the clone's PolicyTrained.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from domains.simic.experience import Episode, Transition
from domains.simic.gnn import HEADS, active_heads
from domains.simic.ppo import masked_mean
from domains.tamiyo.gnn.graph import decision_graph
from domains.tamiyo.gnn.network import PolicyNetwork
from domains.tamiyo.gnn.sampling import evaluate
from domains.tamiyo.gnn.tensors import PolicyGraph, collate
from leyline import pb


@dataclass(frozen=True)
class CloneConfig:
    epochs: int = 20  # 40 drove the slot head to entropy 0.05 on 58 demonstrations, 20 left 0.22
    minibatches: int = 4
    learning_rate: float = 1e-3
    max_grad_norm: float = 0.5
    entropy_coef: float = 0.05  # per head
    min_probability: float = 0.5  # a logged decision at least this probable is the heuristic's own

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class CloneDiagnostics:
    demonstrations: int
    steps: int
    loss_before: dict[str, float]  # head -> mean cross-entropy where the head took part
    loss: dict[str, float]
    accuracy_before: dict[str, float]  # head -> fraction where the logged choice is the most probable
    accuracy: dict[str, float]
    entropy: dict[str, float]  # head -> mean entropy after, where the head took part

    def to_dict(self) -> dict[str, float]:
        flat = {"clone_demonstrations": float(self.demonstrations), "clone_steps": float(self.steps)}
        for name in ("loss_before", "loss", "accuracy_before", "accuracy", "entropy"):
            flat.update({f"clone_{name}_{head}": v for head, v in getattr(self, name).items()})
        return flat


def demonstrations(episodes: Sequence[Episode], config: CloneConfig) -> list[Transition]:
    """The heuristic's own decisions in `episodes` (main lines and dead ends), in episode order."""
    return [
        t
        for episode in episodes
        for t in (*episode.transitions, *episode.dead_ends)
        if math.exp(t.log_prob) >= config.min_probability
    ]


def _heads(
    network: PolicyNetwork, graphs: Sequence[PolicyGraph], actions: torch.Tensor
) -> dict[str, dict[str, torch.Tensor]]:
    """Per head: cross-entropy, accuracy and entropy of each example, and where the head took part."""
    out = evaluate(network, collate(graphs), *actions.unbind(1))
    active = active_heads(actions[:, 0])
    return {
        head: {
            "loss": -out[f"log_prob_{head}"],
            "hit": (out[f"log_prob_{head}"] >= out[f"best_{head}"] - 1e-6).float(),
            "entropy": out[f"entropy_{head}"],
            "active": active[head],
        }
        for head in HEADS
    }


def _measure(network: PolicyNetwork, graphs: Sequence[PolicyGraph], actions: torch.Tensor) -> dict[str, dict]:
    with torch.no_grad():
        heads = _heads(network, graphs, actions)
    return {
        name: {
            head: float(masked_mean(h[name], h["active"]))
            for head, h in heads.items()
            if bool(h["active"].any())
        }
        for name in ("loss", "hit", "entropy")
    }


def clone(
    network: PolicyNetwork,
    demonstrated: Sequence[Transition],
    descriptors: Sequence[pb.BlueprintDescriptor],
    config: CloneConfig,
    generator: torch.Generator,
) -> CloneDiagnostics:
    """Fit `network`'s heads to the demonstrated actions (train mode during the fit, eval mode after)."""
    if not demonstrated:
        raise ValueError("no demonstrations: no logged decision of the heuristic's own with an observation")
    graphs = [decision_graph(t.decision, descriptors) for t in demonstrated]
    actions = torch.tensor([t.action for t in demonstrated], dtype=torch.long).reshape(-1, 3)
    network.eval()
    before = _measure(network, graphs, actions)
    trainable = [p for p in network.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=config.learning_rate)
    size = len(graphs)
    minibatch = max(1, -(-size // config.minibatches))
    steps = 0
    network.train()
    try:
        for _ in range(config.epochs):
            order = torch.randperm(size, generator=generator)
            for start in range(0, size, minibatch):
                index = order[start : start + minibatch]
                heads = _heads(network, [graphs[i] for i in index.tolist()], actions[index])
                loss = torch.stack([masked_mean(h["loss"], h["active"]) for h in heads.values()]).sum()
                entropy = torch.stack([masked_mean(h["entropy"], h["active"]) for h in heads.values()]).sum()
                optimizer.zero_grad(set_to_none=True)
                (loss - config.entropy_coef * entropy).backward()
                nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
                optimizer.step()
                steps += 1
    finally:
        network.eval()
    after = _measure(network, graphs, actions)
    return CloneDiagnostics(
        demonstrations=size,
        steps=steps,
        loss_before=before["loss"],
        loss=after["loss"],
        accuracy_before=before["hit"],
        accuracy=after["hit"],
        entropy=after["entropy"],
    )
