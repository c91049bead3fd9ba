"""Tamiyo's graph: a PolicyObservation (packet, seeds, host topology, catalogue costs, mask) → a graph,
as tensors (`policy_graph`, `tensors.PolicyGraph`: what decisions and PPO run on) or as HeteroData
(`build_graph`: the same graph for torch_geometric users). What depends on the host topology alone (the
layer, parameter and activation rows, every edge index) is computed once per topology and cached.

The builder reads only the PolicyObservation that DecisionMade records, so a decision's graph is rebuilt
from the log alone (`decision_graph`, `graph_from_decision`). Every feature is bounded: raw values go
through symlog (sign(x)·log1p(|x|)) or are already in [0, 1]; non-finite values become ±CLIP (NaN 0) and
each feature is then clipped to [-CLIP, CLIP]. The policy network standardises them further with the
feature statistics recorded in its artifact.

Node types and features (dimensions in FEATURE_DIMS):
- layer (one per parametered host layer, forward order): kind one-hot (topology.LAYER_KINDS), symlog of
  its parameter count, depth in [0, 1], symlog of its per-sample output size;
- parameter (one per parameter tensor of a layer): symlog(numel), rank one-hot (1, 2, 3, ≥4), first tensor
  of its layer (the weight, by convention);
- activation (one per layer output): symlog(size), rank/4, carries a slot, slot kind one-hot
  (SLOT_KINDS: conv2d, sequence, widening), depth;
- seed (one per slot, topology order; dormant slots included, so the slot head covers every slot): stage
  one-hot (12 values of SeedLifecycleStage), alpha, symlog of gradient norm, age, stage epochs, isolation
  violations, risk, headroom and its "measured" flag, contribution and its "measured" flag (absent is not
  zero), embargoed, slot kind one-hot, symlog(slot size).
Graph-level `u` (GLOBAL_DIM): symlog of training/validation loss, training/validation accuracy, symlog of
grad norm, epoch and parameters, risk level/4, conservative, active seeds/slots, the hook latency's risk
level/4 (record.hook_latency_level: 0 within the budget), slots/64, the validation loss on a plateau
(record.LOSS_PLATEAU: the heuristic's germination signal, observation.loss_plateau).

Edges (src, relation, dst), each with its reverse so that every node type receives messages (a type that
receives none drops out of a HeteroConv layer): layer→layer (forward order), seed→layer (the slot's
layer), layer→activation, activation→layer (the next layer), parameter→layer; reverse: layer→seed,
layer→parameter. Masks: `legal_op` [1, 3] and, per seed node, `legal_slot` [S, 2] and `legal_bp` [S, B];
blueprint inputs: `bp_x` [B, BLUEPRINT_DIM] and per seed node `bp_cost` [S, B] (symlog of the parameters
a graft would add, from PolicyObservation.slot_costs; 0 where not estimated).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch_geometric.data import HeteroData

from domains.tamiyo.gnn.layers import Edges, edges_of
from domains.tamiyo.gnn.masking import ActionMask
from domains.tamiyo.gnn.record import HOOK_LATENCY_LEVEL, LOSS_PLATEAU
from domains.tamiyo.gnn.tensors import PolicyGraph, to_hetero
from domains.tamiyo.gnn.topology import LAYER_KINDS
from domains.tamiyo.risk import ACTIVE_STAGE_WEIGHTS, MAX_LEVEL
from leyline import pb
from leyline.seed_metrics import CONTRIBUTION_METRIC, HEADROOM_METRIC, ISOLATION_METRIC, STAGE_EPOCHS_METRIC

CLIP = 10.0
STAGES = 12
EDGE_TYPES: tuple[tuple[str, str, str], ...] = (
    ("layer", "feeds", "layer"),
    ("seed", "attaches", "layer"),
    ("layer", "emits", "activation"),
    ("activation", "enters", "layer"),
    ("parameter", "shapes", "layer"),
    ("layer", "hosts", "seed"),
    ("layer", "owns", "parameter"),
)
# the slot kinds a one-hot distinguishes (a seed's slot, an activation's slot, a blueprint's kinds)
SLOT_KINDS = (pb.SLOT_KIND_CONV2D, pb.SLOT_KIND_SEQUENCE, pb.SLOT_KIND_WIDEN)
FEATURE_DIMS = {
    "layer": len(LAYER_KINDS) + 3,
    "parameter": 6,
    "activation": 4 + len(SLOT_KINDS),
    "seed": STAGES + 13 + len(SLOT_KINDS),
}
GLOBAL_DIM = 13
BLUEPRINT_DIM = 6 + len(SLOT_KINDS)


def symlog(value: float) -> float:
    if math.isnan(value):
        return 0.0
    if math.isinf(value):
        return CLIP if value > 0 else -CLIP
    return max(-CLIP, min(CLIP, math.copysign(math.log1p(abs(value)), value)))


def unit(value: float) -> float:
    return 0.0 if not math.isfinite(value) else max(-CLIP, min(CLIP, value))


def _size(shape: Sequence[int]) -> int:
    return math.prod(shape) if shape else 0


def _layer_rows(topology: pb.HostTopology) -> list[list[float]]:
    count = len(topology.layers)
    rows = []
    for i, layer in enumerate(topology.layers):
        kind = [1.0 if layer.kind == k else 0.0 for k in LAYER_KINDS]
        depth = i / (count - 1) if count > 1 else 0.0
        rows.append([*kind, symlog(sum(layer.parameter_sizes)), depth, symlog(_size(layer.output_shape))])
    return rows


# Columns of a seed row that go through symlog (the others are one-hot flags or already in [0, 1]).
SEED_SYMLOG = torch.tensor(
    [False] * STAGES
    + [False, True, True, True, True, False, True, False, True]
    + [False] * (2 + len(SLOT_KINDS))
    + [True, False]
)


def kind_one_hot(kind: int | None) -> list[float]:
    """One column per SLOT_KINDS entry: 1.0 at the slot's kind, zeros for no slot."""
    return [1.0 if kind == known else 0.0 for known in SLOT_KINDS]


def _seed_row(seed: pb.SeedState, slot: pb.HostSlot, embargoed: bool) -> list[float]:
    """Raw values; `bounded(rows, SEED_SYMLOG)` transforms them all at once."""
    stage = [0.0] * STAGES
    stage[seed.stage if 0 <= seed.stage < STAGES else 0] = 1.0
    metrics = seed.metrics
    headroom = metrics.get(HEADROOM_METRIC)
    contribution = metrics.get(CONTRIBUTION_METRIC)
    return [
        *stage,
        seed.alpha,
        seed.gradient_norm,
        seed.age_epochs,
        metrics.get(STAGE_EPOCHS_METRIC, float(seed.age_epochs)),
        metrics.get(ISOLATION_METRIC, 0.0),
        seed.risk,
        headroom if headroom is not None else 0.0,
        1.0 if headroom is not None else 0.0,
        contribution * 100.0 if contribution is not None else 0.0,
        1.0 if contribution is not None else 0.0,
        1.0 if embargoed else 0.0,
        *kind_one_hot(slot.kind),
        _size(slot.shape),
        1.0 if seed.stage in ACTIVE_STAGE_WEIGHTS else 0.0,
    ]


def bounded(rows: list[list[float]], logged: torch.Tensor) -> torch.Tensor:
    """symlog on the `logged` columns, then NaN → 0, ±inf → ±CLIP and everything clipped to [-CLIP, CLIP]."""
    x = torch.tensor(rows, dtype=torch.float64).reshape(len(rows), logged.shape[0])
    x = torch.where(logged, torch.sign(x) * torch.log1p(x.abs()), x)
    return torch.nan_to_num(x, nan=0.0, posinf=CLIP, neginf=-CLIP).clamp(-CLIP, CLIP).float()


def _globals(observation: pb.PolicyObservation) -> list[float]:
    packet = observation.packet
    slots = max(len(observation.topology.slots), 1)
    active = sum(1 for s in packet.seeds if s.stage in ACTIVE_STAGE_WEIGHTS)
    return [
        symlog(packet.training_loss),
        symlog(packet.validation_loss),
        unit(packet.training_accuracy),
        unit(packet.validation_accuracy),
        symlog(packet.metrics.get("grad_norm", 0.0)),
        symlog(packet.epoch),
        symlog(observation.parameters),
        observation.risk_level / 4.0,
        1.0 if observation.conservative else 0.0,
        active / slots,
        packet.metrics.get(HOOK_LATENCY_LEVEL, 0.0) / MAX_LEVEL,
        len(observation.topology.slots) / 64.0,
        packet.metrics.get(LOSS_PLATEAU, 0.0),
    ]


def blueprint_rows(catalogue: Sequence[pb.BlueprintDescriptor]) -> list[list[float]]:
    """Static features of each catalogue entry (the blueprint head scores them against a slot)."""
    return [
        [
            unit(d.risk),
            symlog(d.curriculum_stage),
            1.0 if d.tier == pb.BLUEPRINT_TIER_SAFE else 0.0,
            1.0 if d.conservative_pool else 0.0,
            *(1.0 if kind in d.slot_kinds else 0.0 for kind in SLOT_KINDS),
            symlog(len(d.parameter_ranges)),
            1.0 if d.requires_approval else 0.0,
        ]
        for d in catalogue
    ]


@dataclass(frozen=True)
class _Static:
    """The parts of a graph that depend on the host topology alone (cached: a run's topology is fixed)."""

    layer: torch.Tensor
    parameter: torch.Tensor
    activation: torch.Tensor
    slot_id: torch.Tensor
    edges: dict[tuple[str, str, str], Edges]


@functools.lru_cache(maxsize=16)
def _static(serialized: bytes) -> _Static:
    topology = pb.HostTopology.FromString(serialized)
    layers = len(topology.layers)
    slots = list(topology.slots)
    parameter_rows: list[list[float]] = []
    parameter_owner: list[int] = []
    for i, layer in enumerate(topology.layers):
        for k, (numel, rank) in enumerate(zip(layer.parameter_sizes, layer.parameter_ranks, strict=True)):
            ranks = [1.0 if min(rank, 4) == r else 0.0 for r in (1, 2, 3, 4)]
            parameter_rows.append([symlog(numel), *ranks, 1.0 if k == 0 else 0.0])
            parameter_owner.append(i)
    slot_at = {s.after_layer: s for s in slots}
    activation_rows = []
    for i, layer in enumerate(topology.layers):
        slot = slot_at.get(i)
        activation_rows.append(
            [
                symlog(_size(layer.output_shape)),
                len(layer.output_shape) / 4.0,
                1.0 if slot is not None else 0.0,
                *kind_one_hot(slot.kind if slot is not None else None),
                i / (layers - 1) if layers > 1 else 0.0,
            ]
        )
    chain = torch.arange(layers, dtype=torch.long)
    seed_layer = torch.tensor([min(s.after_layer, layers - 1) for s in slots], dtype=torch.long)
    seed_index = torch.arange(len(slots), dtype=torch.long)
    owner = torch.tensor(parameter_owner, dtype=torch.long)
    parameter_index = torch.arange(len(parameter_owner), dtype=torch.long)
    counts = {"layer": layers, "seed": len(slots), "activation": layers, "parameter": len(parameter_owner)}
    edges = {
        ("layer", "feeds", "layer"): (chain[:-1], chain[1:]),
        ("seed", "attaches", "layer"): (seed_index, seed_layer),
        ("layer", "emits", "activation"): (chain, chain),
        ("activation", "enters", "layer"): (chain[:-1], chain[1:]),
        ("parameter", "shapes", "layer"): (parameter_index, owner),
        ("layer", "hosts", "seed"): (seed_layer, seed_index),
        ("layer", "owns", "parameter"): (owner, parameter_index),
    }
    return _Static(
        layer=torch.tensor(_layer_rows(topology), dtype=torch.float32).reshape(-1, FEATURE_DIMS["layer"]),
        parameter=torch.tensor(parameter_rows, dtype=torch.float32).reshape(-1, FEATURE_DIMS["parameter"]),
        activation=torch.tensor(activation_rows, dtype=torch.float32).reshape(-1, FEATURE_DIMS["activation"]),
        slot_id=torch.tensor([s.slot for s in slots], dtype=torch.long),
        edges={
            edge_type: edges_of(torch.stack(pair), counts[edge_type[2]]) for edge_type, pair in edges.items()
        },
    )


def policy_graph(
    observation: pb.PolicyObservation, blueprint_features: torch.Tensor | None = None
) -> PolicyGraph:
    """The graph of one decision. `blueprint_features` [B, BLUEPRINT_DIM] rows follow observation.catalogue
    (`blueprint_rows` of the descriptors); without them the blueprint inputs are zeros."""
    topology = observation.topology
    if not topology.layers or not topology.slots:
        raise ValueError("the observation's host topology needs at least one layer and one slot")
    static = _static(topology.SerializeToString(deterministic=True))
    slots = topology.slots
    blueprints = len(observation.catalogue)
    seeds = {s.slot: s for s in observation.packet.seeds}
    embargoed = set(observation.embargoed_slots)
    seed_rows = [
        _seed_row(
            seeds.get(s.slot, pb.SeedState(slot=s.slot, stage=pb.SEED_STAGE_DORMANT)), s, s.slot in embargoed
        )
        for s in slots
    ]
    mask = ActionMask.unpack(observation.legal, len(slots), blueprints)
    if len(observation.slot_costs) == len(slots) * blueprints:
        raw = torch.from_numpy(np.array(observation.slot_costs, dtype=np.float32)).reshape(len(slots), -1)
        costs = torch.where(raw >= 0, raw.clamp(min=0).log1p(), torch.zeros(())).clamp(max=CLIP)
    else:
        costs = torch.zeros((len(slots), blueprints), dtype=torch.float32)
    if blueprint_features is None:
        blueprint_features = torch.zeros((blueprints, BLUEPRINT_DIM), dtype=torch.float32)
    return PolicyGraph(
        x={
            "layer": static.layer,
            "seed": bounded(seed_rows, SEED_SYMLOG),
            "activation": static.activation,
            "parameter": static.parameter,
        },
        edges=static.edges,
        u=torch.tensor([_globals(observation)], dtype=torch.float32),
        legal_op=torch.from_numpy(mask.operation.copy()).reshape(1, -1),
        legal_slot=torch.from_numpy(mask.slot.T.copy()),
        legal_bp=torch.from_numpy(mask.blueprint.copy()),
        bp_cost=costs,
        bp_x=blueprint_features,
        slot_id=static.slot_id,
    )


def build_graph(
    observation: pb.PolicyObservation, blueprint_features: torch.Tensor | None = None
) -> HeteroData:
    """`policy_graph` as HeteroData."""
    return to_hetero(policy_graph(observation, blueprint_features))


def decision_graph(
    decision: pb.DecisionMade, descriptors: Sequence[pb.BlueprintDescriptor] = ()
) -> PolicyGraph:
    """Rebuild a logged decision's graph; `descriptors` supplies the blueprint features by id."""
    if not decision.HasField("observation"):
        raise ValueError(f"decision at epoch {decision.epoch} records no observation to rebuild a graph from")
    by_id = {d.blueprint_id: d for d in descriptors}
    catalogue = [by_id.get(b, pb.BlueprintDescriptor(blueprint_id=b)) for b in decision.observation.catalogue]
    features = torch.tensor(blueprint_rows(catalogue), dtype=torch.float32).reshape(-1, BLUEPRINT_DIM)
    return policy_graph(decision.observation, features)


def graph_from_decision(
    decision: pb.DecisionMade, descriptors: Sequence[pb.BlueprintDescriptor] = ()
) -> HeteroData:
    """`decision_graph` as HeteroData."""
    return to_hetero(decision_graph(decision, descriptors))
