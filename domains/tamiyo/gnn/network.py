"""Tamiyo's policy network: per-type encoders, a GraphSAGE layer then a GAT layer over the hetero graph,
and heads for the operation, the slot, the blueprint, the risk level and the value.

- Encoders: standardise each node type's features with the statistics recorded in the artifact
  (buffers `<type>_mean`/`<type>_std`, clipped to ±CLIP), then Linear + ReLU to `hidden`.
- Message passing (`layers.py`: torch_geometric's arithmetic in plain torch): a GraphSAGE layer (mean
  aggregation, root weight) over every edge type, so every node type receives, then a single-head GAT
  layer (`add_self_loops=False`: an edge type may join two node types) over the structural edge types
  only (ATTENDED): layer→layer (forward order), seed→layer (a slot's seed into the layer it sits on) and
  its reverse layer→seed. The edges to and from activation and parameter nodes (layer→activation,
  activation→layer, parameter→layer, layer→parameter) are SAGE-only: those nodes have passed their
  information to the layers in the SAGE layer. Each layer sums over the edge types into a node type, with
  residuals, so the activation and parameter nodes keep their SAGE embeddings through the GAT layer
  instead of dropping out of it.
- Heads (float32 logits): `operation` [G, 3] from the pooled graph (mean of each node type) and `u`;
  `slot` [S, 2] per seed node (germinate here, cull here); `blueprint` scores each catalogue entry
  against one seed node (`blueprint_logits`); `risk` [G, 5]; `value` [G] (an action-independent V(s)).

Eager only: a graft changes node counts and torch.compile would recompile each time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch_geometric.data import HeteroData

from domains.tamiyo.gnn.graph import BLUEPRINT_DIM, CLIP, EDGE_TYPES, FEATURE_DIMS, GLOBAL_DIM
from domains.tamiyo.gnn.layers import GatConv, HeteroLayer, SageConv
from domains.tamiyo.gnn.masking import NOOP, OPERATIONS, SLOT_OPERATIONS
from domains.tamiyo.gnn.tensors import NODE_TYPES, PolicyGraph, of_hetero

RISK_LEVELS = 5
NOOP_PRIOR = 2.0
ATTENDED = (  # the edge types of the GAT layer: the structural ones
    ("layer", "feeds", "layer"),
    ("seed", "attaches", "layer"),
    ("layer", "hosts", "seed"),
)


@dataclass(frozen=True)
class NetworkConfig:
    hidden: int = 32
    head_hidden: int = 32

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, outputs))


def _pool(x: torch.Tensor, batch: torch.Tensor | None, graphs: int) -> torch.Tensor:
    if batch is None:
        return x.mean(dim=0, keepdim=True)
    total = torch.zeros((graphs, x.shape[1]), dtype=x.dtype).index_add_(0, batch, x)
    counts = torch.bincount(batch, minlength=graphs).clamp(min=1).unsqueeze(1).to(x.dtype)
    return total / counts


class PolicyNetwork(nn.Module):
    def __init__(self, config: NetworkConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or NetworkConfig()
        hidden = config.hidden
        for node_type, dim in FEATURE_DIMS.items():
            self.register_buffer(f"{node_type}_mean", torch.zeros(dim))
            self.register_buffer(f"{node_type}_std", torch.ones(dim))
        self.encoders = nn.ModuleDict(
            {node_type: nn.Linear(dim, hidden) for node_type, dim in FEATURE_DIMS.items()}
        )
        self.sage = HeteroLayer(EDGE_TYPES, SageConv, hidden)
        self.gat = HeteroLayer(ATTENDED, GatConv, hidden)
        pooled = hidden * len(NODE_TYPES) + GLOBAL_DIM
        self.operation_head = _mlp(pooled, config.head_hidden, len(OPERATIONS))
        self.slot_head = _mlp(hidden + pooled, config.head_hidden, len(SLOT_OPERATIONS))
        self.blueprint_head = _mlp(hidden + BLUEPRINT_DIM + 1, config.head_hidden, 1)
        self.risk_head = _mlp(pooled, config.head_hidden, RISK_LEVELS)
        self.value_head = _mlp(pooled, config.head_hidden, 1)
        last = self.operation_head[-1]
        assert isinstance(last, nn.Linear)
        with torch.no_grad():  # an untrained policy mostly waits: the no-op starts NOOP_PRIOR logits ahead
            last.bias[NOOP] += NOOP_PRIOR

    def encode(self, graph: PolicyGraph) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Node embeddings after message passing, and the pooled graph vector [G, pooled]."""
        x: dict[str, torch.Tensor] = {}
        for node_type in NODE_TYPES:
            mean, std = getattr(self, f"{node_type}_mean"), getattr(self, f"{node_type}_std")
            normalised = ((graph.x[node_type] - mean) / std).clamp(-CLIP, CLIP)
            x[node_type] = torch.relu(self.encoders[node_type](normalised))
        h = self.sage(x, graph.edges)
        x = {t: torch.relu(h[t]) + x[t] for t in NODE_TYPES}
        h = self.gat(x, graph.edges)
        x = {t: torch.relu(h[t]) + x[t] if t in h else x[t] for t in NODE_TYPES}
        batch = graph.batch
        pooled = [_pool(x[t], None if batch is None else batch[t], graph.graphs) for t in NODE_TYPES]
        return x, torch.cat([*pooled, graph.u], dim=1)

    def forward(self, data: PolicyGraph | HeteroData) -> dict[str, torch.Tensor]:
        graph = data if isinstance(data, PolicyGraph) else of_hetero(data)
        x, pooled = self.encode(graph)
        seeds = x["seed"]
        per_seed = pooled.expand(seeds.shape[0], -1) if graph.batch is None else pooled[graph.batch["seed"]]
        return {
            "operation": self.operation_head(pooled),
            "slot": self.slot_head(torch.cat([seeds, per_seed], dim=1)),
            "risk": self.risk_head(pooled),
            "value": self.value_head(pooled).squeeze(1),
            "seed": seeds,
        }

    def blueprint_logits(
        self, seed_embedding: torch.Tensor, blueprint_features: torch.Tensor, costs: torch.Tensor
    ) -> torch.Tensor:
        """Scores [..., B] of each blueprint at the seed nodes `seed_embedding` [..., H]; `costs` [..., B]."""
        count = blueprint_features.shape[-2]
        seeds = seed_embedding.unsqueeze(-2).expand(*seed_embedding.shape[:-1], count, -1)
        features = blueprint_features.expand(*seed_embedding.shape[:-1], count, -1)
        return self.blueprint_head(torch.cat([seeds, features, costs.unsqueeze(-1)], dim=-1)).squeeze(-1)


def initial_network(seed: int, config: NetworkConfig | None = None) -> PolicyNetwork:
    """An untrained network whose weights depend on `seed` only (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return PolicyNetwork(config)
