"""The policy's graph as plain tensors (`PolicyGraph`), their disjoint union (`collate`), and the
conversions to and from torch_geometric's HeteroData.

The network, the sampler and the PPO evaluation read a PolicyGraph: building one from a packet, or
batching 32 of them into one disjoint-union graph, costs a few dozen tensor ops, where a HeteroData pays
per attribute for its storage machinery (half of a decision's graph building, and 6 ms of a 12 ms PPO
step, went to HeteroData and `Batch.from_data_list`). `to_hetero`/`of_hetero` give the same graph as the
HeteroData the rest of the world reads (node types, edge types and attributes in `graph.py`'s docstring).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch_geometric.data import HeteroData

from domains.tamiyo.gnn.layers import Edges, EdgeType

NODE_TYPES = ("layer", "seed", "activation", "parameter")


@dataclass(frozen=True)
class PolicyGraph:
    """One graph (`batch` None) or the disjoint union of G graphs."""

    x: dict[str, torch.Tensor]  # node type → features [N_t, FEATURE_DIMS[t]]
    edges: dict[EdgeType, Edges]
    u: torch.Tensor  # [G, GLOBAL_DIM]
    legal_op: torch.Tensor  # [G, 3] bool
    legal_slot: torch.Tensor  # [S, 2] bool, per seed node
    legal_bp: torch.Tensor  # [S, B] bool
    bp_cost: torch.Tensor  # [S, B]
    bp_x: torch.Tensor  # [G·B, BLUEPRINT_DIM]
    slot_id: torch.Tensor  # [S] the slot of each seed node
    batch: dict[str, torch.Tensor] | None = None  # node type → graph of each node
    seed_ptr: torch.Tensor | None = None  # [G + 1] where each graph's seed nodes start

    @property
    def graphs(self) -> int:
        return int(self.u.shape[0])


def _starts(counts: list[int]) -> torch.Tensor:
    return torch.tensor([0, *counts], dtype=torch.long).cumsum(0)


def collate(items: Sequence[PolicyGraph | HeteroData]) -> PolicyGraph:
    """The disjoint union of single graphs (the same catalogue size; HeteroData of `to_hetero` too): node
    rows concatenated, edge indices shifted by the node counts before them."""
    graphs = [g if isinstance(g, PolicyGraph) else of_hetero(g) for g in items]
    if not graphs or any(g.batch is not None for g in graphs):
        raise ValueError("collate takes one or more single graphs")
    index = torch.arange(len(graphs))
    counts = {t: [g.x[t].shape[0] for g in graphs] for t in NODE_TYPES}
    starts = {t: _starts(c) for t, c in counts.items()}
    edges = {}
    for edge in graphs[0].edges:
        src, _, dst = edge
        per_graph = torch.tensor([g.edges[edge].edge_index.shape[1] for g in graphs])
        owner = index.repeat_interleave(per_graph)
        shift = torch.stack([starts[src][owner], starts[dst][owner]])
        edges[edge] = Edges(
            torch.cat([g.edges[edge].edge_index for g in graphs], dim=1) + shift,
            torch.cat([g.edges[edge].mean_scale for g in graphs]),
            all(g.edges[edge].single for g in graphs),
        )
    return PolicyGraph(
        x={t: torch.cat([g.x[t] for g in graphs]) for t in NODE_TYPES},
        edges=edges,
        u=torch.cat([g.u for g in graphs]),
        legal_op=torch.cat([g.legal_op for g in graphs]),
        legal_slot=torch.cat([g.legal_slot for g in graphs]),
        legal_bp=torch.cat([g.legal_bp for g in graphs]),
        bp_cost=torch.cat([g.bp_cost for g in graphs]),
        bp_x=torch.cat([g.bp_x for g in graphs]),
        slot_id=torch.cat([g.slot_id for g in graphs]),
        batch={t: index.repeat_interleave(torch.tensor(c)) for t, c in counts.items()},
        seed_ptr=starts["seed"],
    )


def to_hetero(graph: PolicyGraph) -> HeteroData:
    """A single graph as HeteroData (`Batch.from_data_list` batches these as `collate` does)."""
    if graph.batch is not None:
        raise ValueError("to_hetero takes a single graph; collate HeteroData with Batch.from_data_list")
    data = HeteroData()
    for node_type, x in graph.x.items():
        data[node_type].x = x
    for edge, edges in graph.edges.items():
        data[edge].edge_index = edges.edge_index
        data[edge].mean_scale = edges.mean_scale
    seed = data["seed"]
    seed.slot_id, seed.legal_slot, seed.legal_bp, seed.bp_cost = (
        graph.slot_id,
        graph.legal_slot,
        graph.legal_bp,
        graph.bp_cost,
    )
    data.u, data.legal_op, data.bp_x = graph.u, graph.legal_op, graph.bp_x
    return data


def _edges(edge_index: torch.Tensor, mean_scale: torch.Tensor) -> Edges:
    return Edges(edge_index, mean_scale, bool((mean_scale == 1).all()))  # a scale of 1: in-degree <= 1


def of_hetero(data: HeteroData) -> PolicyGraph:
    """A HeteroData of `to_hetero`, or a torch_geometric Batch of them."""
    seed = data["seed"]
    batched = hasattr(seed, "batch")
    return PolicyGraph(
        x={t: data[t].x for t in NODE_TYPES},
        edges={e: _edges(data[e].edge_index, data[e].mean_scale) for e in data.edge_types},
        u=data.u,
        legal_op=data.legal_op,
        legal_slot=seed.legal_slot,
        legal_bp=seed.legal_bp,
        bp_cost=seed.bp_cost,
        bp_x=data.bp_x,
        slot_id=seed.slot_id,
        batch={t: data[t].batch for t in NODE_TYPES} if batched else None,
        seed_ptr=seed.ptr if batched else None,
    )
