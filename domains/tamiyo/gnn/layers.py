"""Message passing for Tamiyo's hetero graph in plain torch: GraphSAGE and GAT between two node types, and
a hetero layer that sums their outputs per destination type.

The arithmetic is torch_geometric's (SAGEConv with mean aggregation and a root weight; GATConv with one
head, `add_self_loops=False`, LeakyReLU slope 0.2, no dropout; HeteroConv with `aggr="sum"`, tested
against them in tests/tamiyo/gnn/test_layers.py) without their generic dispatch (argument inspection,
`propagate` and the aggregation modules), which cost more than the arithmetic on graphs of 30–200 nodes.
Every weight is an `nn.Linear` called as a module, so LoRA adapters (domains/simic/lora.py) wrap them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
from torch import nn

EdgeType = tuple[str, str, str]
NEGATIVE_SLOPE = 0.2
SOFTMAX_EPSILON = 1e-16  # torch_geometric.utils.softmax's guard against an empty sum


class Edges(NamedTuple):
    """One edge type's edges: `edge_index` [2, E] (source row, destination row); `mean_scale` [N_dst, 1],
    1 / in-degree of each destination node (1 where it has none), which turns a sum into a mean; `single`:
    no destination has more than one incoming edge (then a mean is the sum and an attention weight is
    exactly 1, in value and gradient, so both are skipped)."""

    edge_index: torch.Tensor
    mean_scale: torch.Tensor
    single: bool


def edges_of(edge_index: torch.Tensor, destinations: int) -> Edges:
    degree = torch.bincount(edge_index[1], minlength=destinations)
    scale = degree.clamp(min=1).reciprocal().to(torch.float32).unsqueeze(1)
    return Edges(edge_index, scale, bool((degree <= 1).all()))


def edge_key(edge: EdgeType) -> str:
    return "__".join(edge)


def _glorot(tensor: torch.Tensor) -> None:
    bound = math.sqrt(6.0 / (tensor.size(-2) + tensor.size(-1)))
    nn.init.uniform_(tensor, -bound, bound)


class SageConv(nn.Module):
    """out_i = lin_l(mean of x_src over the edges into i; 0 without any) + lin_r(x_dst_i)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.lin_l = nn.Linear(channels, channels)
        self.lin_r = nn.Linear(channels, channels, bias=False)

    def forward(self, x_src: torch.Tensor, x_dst: torch.Tensor, edges: Edges) -> torch.Tensor:
        src, dst = edges.edge_index.unbind(0)
        total = x_src.new_zeros((x_dst.shape[0], x_src.shape[1])).index_add_(
            0, dst, x_src.index_select(0, src)
        )
        return self.lin_l(total * edges.mean_scale) + self.lin_r(x_dst)


class GatConv(nn.Module):
    """One attention head over the edges src → dst, without self-loops (the types differ):
    α_ji = softmax over the edges into i of LeakyReLU(a_src·W_src x_j + a_dst·W_dst x_i);
    out_i = Σ_j α_ji W_src x_j + bias (bias alone without any edge into i)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.lin_src = nn.Linear(channels, channels, bias=False)
        self.lin_dst = nn.Linear(channels, channels, bias=False)
        self.att_src = nn.Parameter(torch.empty(1, 1, channels))
        self.att_dst = nn.Parameter(torch.empty(1, 1, channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        for parameter in (self.lin_src.weight, self.lin_dst.weight, self.att_src, self.att_dst):
            _glorot(parameter)

    def forward(self, x_src: torch.Tensor, x_dst: torch.Tensor, edges: Edges) -> torch.Tensor:
        src, dst = edges.edge_index.unbind(0)
        h_src = self.lin_src(x_src)
        count = x_dst.shape[0]
        if edges.single:
            weighted = h_src.index_select(0, src)
        else:
            weighted = h_src[src] * self._attention(h_src, x_dst, src, dst).unsqueeze(1)
        return h_src.new_zeros((count, h_src.shape[1])).index_add_(0, dst, weighted) + self.bias

    def _attention(
        self, h_src: torch.Tensor, x_dst: torch.Tensor, src: torch.Tensor, dst: torch.Tensor
    ) -> torch.Tensor:
        """Each edge's weight α_ji: a softmax over the edges into each destination."""
        score_src = h_src @ self.att_src.view(-1)
        score_dst = self.lin_dst(x_dst) @ self.att_dst.view(-1)
        score = nn.functional.leaky_relu(score_src[src] + score_dst[dst], NEGATIVE_SLOPE)
        count = x_dst.shape[0]
        peak = score.new_zeros(count).scatter_reduce_(0, dst, score.detach(), "amax", include_self=False)
        weight = (score - peak[dst]).exp()
        total = weight.new_zeros(count).index_add_(0, dst, weight) + SOFTMAX_EPSILON
        return weight / total[dst]


class HeteroLayer(nn.Module):
    """One convolution per edge type; a node type's output is the sum over the edge types into it (a type
    that receives none is absent from the output, as in HeteroConv)."""

    def __init__(
        self, edges: Sequence[EdgeType], conv: type[SageConv] | type[GatConv], channels: int
    ) -> None:
        super().__init__()
        self.edges = tuple(edges)
        self.convs = nn.ModuleDict({edge_key(edge): conv(channels) for edge in self.edges})

    def forward(
        self, x: Mapping[str, torch.Tensor], edges: Mapping[EdgeType, Edges]
    ) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for edge in self.edges:
            src, _, dst = edge
            h = self.convs[edge_key(edge)](x[src], x[dst], edges[edge])
            out[dst] = out[dst] + h if dst in out else h
        return out
