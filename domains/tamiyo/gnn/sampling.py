"""Masked, factored sampling: operation, then slot given the operation, then blueprint given the slot.

Illegal choices get a logit of -inf before the softmax, so their probability is exactly 0 and
`torch.multinomial` never draws them; the probability of the taken action is the product of the three
factors (a factor that does not apply is 1). Sampling uses a caller's `torch.Generator`, so a decision is
deterministic for a seed; without one the choice is greedy: the most probable legal choice of each factor
in turn (the held-out evaluation's decisions, domains/tamiyo/config.HeuristicConfig.greedy). `evaluate`
gives the log-probabilities, entropies and values of logged actions on a batch of graphs (the quantities
a PPO update needs).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch_geometric.data import HeteroData
from torch_geometric.utils import scatter

from domains.tamiyo.gnn.masking import GERMINATE, NOOP, SLOT_OPERATIONS
from domains.tamiyo.gnn.network import PolicyNetwork
from domains.tamiyo.gnn.tensors import PolicyGraph, of_hetero

NEG = -1e9  # a finite "minus infinity" for batched segment softmaxes (no NaN from all-masked segments)


@dataclass(frozen=True)
class Sample:
    operation: int
    slot: int  # index into the topology's slots; -1 for the no-op
    blueprint: int  # index into the catalogue; -1 unless germinating
    probability: float
    value: float
    risk_level: int


@contextmanager
def one_thread() -> Iterator[None]:
    """torch's intra-op threads set to one for a decision, then restored: on a few shared cores a pool of
    several threads made an op on a 30-node graph 30-200x slower (the workers wait for cores), and one
    decision's ops are far too small to share. Nothing changes when the run already uses one thread."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _masked(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return logits.float().masked_fill(~mask, float("-inf"))


def _draw(logits: torch.Tensor, generator: torch.Generator | None) -> tuple[int, float]:
    probabilities = torch.softmax(logits, dim=-1)
    if not bool(torch.isfinite(probabilities).all()):
        raise ValueError("non-finite action probabilities")
    if generator is None:
        choice = int(probabilities.argmax())
    else:
        choice = int(torch.multinomial(probabilities, 1, generator=generator))
    return choice, float(probabilities[choice])


def sample(
    network: PolicyNetwork, data: PolicyGraph | HeteroData, generator: torch.Generator | None
) -> Sample:
    """One decision on one graph (no autograd); greedy when `generator` is None. `probability` is the
    network's probability of the chosen action either way."""
    graph = data if isinstance(data, PolicyGraph) else of_hetero(data)
    with torch.inference_mode():
        out = network(graph)
        operation, probability = _draw(_masked(out["operation"][0], graph.legal_op[0]), generator)
        slot = blueprint = -1
        if operation != NOOP:
            column = SLOT_OPERATIONS.index(operation)
            mask = graph.legal_slot[:, column]
            slot, p_slot = _draw(_masked(out["slot"][:, column], mask), generator)
            probability *= p_slot
        if operation == GERMINATE:
            logits = network.blueprint_logits(out["seed"][slot], graph.bp_x, graph.bp_cost[slot])
            blueprint, p_blueprint = _draw(_masked(logits, graph.legal_bp[slot]), generator)
            probability *= p_blueprint
        value = float(out["value"][0])
        risk = int(out["risk"][0].argmax())
    if not math.isfinite(value):
        raise ValueError("non-finite value estimate")
    return Sample(operation, slot, blueprint, probability, value, risk)


def _segment_log_softmax(logits: torch.Tensor, index: torch.Tensor, segments: int) -> torch.Tensor:
    peak = scatter(logits, index, dim=0, dim_size=segments, reduce="max")
    shifted = logits - peak[index]
    total = scatter(shifted.exp(), index, dim=0, dim_size=segments, reduce="sum")
    return shifted - total.log()[index]


def evaluate(
    network: PolicyNetwork,
    data: PolicyGraph | HeteroData,
    operation: torch.Tensor,
    slot: torch.Tensor,
    blueprint: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Log-probabilities [G], per-head entropies [G] and values [G] of logged actions on a batch of graphs
    (`tensors.collate`, or a torch_geometric Batch of HeteroData). Per head also the logged choice's
    log-probability (`log_prob_<head>`, 0 where the head does not apply) and the head's largest
    (`best_<head>`): behaviour cloning's loss and accuracy (domains/simic/clone.py).

    `slot` holds each graph's local seed index (-1 for a no-op), `blueprint` the catalogue index (-1 unless
    germinating)."""
    batch = data if isinstance(data, PolicyGraph) else of_hetero(data)
    if batch.batch is None or batch.seed_ptr is None:
        raise ValueError("evaluate takes a batch of graphs (collate even one)")
    out = network(batch)
    graphs = out["operation"].shape[0]
    op_logp = torch.log_softmax(out["operation"].float().masked_fill(~batch.legal_op, NEG), dim=1)
    op_chosen = op_logp.gather(1, operation.unsqueeze(1)).squeeze(1)
    log_prob = op_chosen
    entropy_op = -(op_logp.exp() * op_logp).sum(dim=1)

    seed_graph = batch.batch["seed"]
    uses_slot = operation != NOOP
    column = (operation == SLOT_OPERATIONS[1]).long()  # 0: germinate, 1: cull
    slot_logits = out["slot"].float().gather(1, column[seed_graph].unsqueeze(1)).squeeze(1)
    slot_mask = batch.legal_slot.gather(1, column[seed_graph].unsqueeze(1)).squeeze(1)
    slot_logp = _segment_log_softmax(slot_logits.masked_fill(~slot_mask, NEG), seed_graph, graphs)
    start = batch.seed_ptr[:-1]
    chosen = start + slot.clamp(min=0)
    slot_chosen = torch.where(uses_slot, slot_logp[chosen], torch.zeros_like(log_prob))
    log_prob = log_prob + slot_chosen
    slot_best = scatter(slot_logp, seed_graph, dim=0, dim_size=graphs, reduce="max")
    slot_entropy = scatter(-(slot_logp.exp() * slot_logp), seed_graph, dim=0, dim_size=graphs, reduce="sum")

    germinating = operation == GERMINATE
    count = batch.legal_bp.shape[1]
    bp_logits = network.blueprint_logits(
        out["seed"][chosen], batch.bp_x.reshape(graphs, count, -1), batch.bp_cost[chosen]
    ).float()
    bp_logp = torch.log_softmax(bp_logits.masked_fill(~batch.legal_bp[chosen], NEG), dim=1)
    picked = bp_logp.gather(1, blueprint.clamp(min=0).unsqueeze(1)).squeeze(1)
    bp_chosen = torch.where(germinating, picked, torch.zeros_like(log_prob))
    log_prob = log_prob + bp_chosen
    bp_entropy = -(bp_logp.exp() * bp_logp).sum(dim=1)
    return {
        "log_prob": log_prob,
        "entropy_operation": entropy_op,
        "entropy_slot": torch.where(uses_slot, slot_entropy, torch.zeros_like(slot_entropy)),
        "entropy_blueprint": torch.where(germinating, bp_entropy, torch.zeros_like(bp_entropy)),
        "log_prob_operation": op_chosen,
        "log_prob_slot": slot_chosen,
        "log_prob_blueprint": bp_chosen,
        "best_operation": op_logp.max(dim=1).values,
        "best_slot": slot_best,
        "best_blueprint": bp_logp.max(dim=1).values,
        "value": out["value"],
        "risk": out["risk"],
    }
