"""The plain-torch message passing computes what torch_geometric's SAGEConv, GATConv (one head, no self
loops) and HeteroConv(aggr="sum") compute, on random graphs with isolated and multiply-connected nodes,
values and gradients."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.nn import GATConv, HeteroConv, SAGEConv

from domains.tamiyo.gnn.layers import GatConv, HeteroLayer, SageConv, edge_key, edges_of

CHANNELS = 8
EDGES = (("a", "to", "b"), ("b", "to", "b"), ("c", "to", "b"), ("b", "back", "a"))


def reference(conv: SageConv | GatConv) -> SAGEConv | GATConv:
    """torch_geometric's convolution with `conv`'s weights."""
    if isinstance(conv, SageConv):
        theirs: SAGEConv | GATConv = SAGEConv((CHANNELS, CHANNELS), CHANNELS)
    else:
        theirs = GATConv((CHANNELS, CHANNELS), CHANNELS, heads=1, add_self_loops=False)
    state = {k: v for k, v in conv.state_dict().items()}
    theirs.load_state_dict(state, strict=True)
    return theirs


@st.composite
def graphs(draw: st.DrawFn) -> tuple[dict[str, torch.Tensor], dict[tuple[str, str, str], torch.Tensor], int]:
    sizes = {t: draw(st.integers(1, 7)) for t in "abc"}
    seed = draw(st.integers(0, 2**16))
    generator = torch.Generator().manual_seed(seed)
    x = {t: torch.randn(n, CHANNELS, generator=generator) for t, n in sizes.items()}
    edges = {}
    for edge in EDGES:
        count = draw(st.integers(0, 12))
        if draw(st.booleans()):  # at most one edge into each destination: the `single` shortcuts
            dst = torch.randperm(sizes[edge[2]], generator=generator)[: min(count, sizes[edge[2]])]
        else:
            dst = torch.randint(sizes[edge[2]], (count,), generator=generator)
        src = torch.randint(sizes[edge[0]], (len(dst),), generator=generator)
        edges[edge] = torch.stack([src, dst])
    return x, edges, seed


@settings(max_examples=40, deadline=None)
@given(graphs())
def test_each_convolution_matches_torch_geometric(graph: tuple) -> None:
    x, edges, seed = graph
    torch.manual_seed(seed)
    for conv in (SageConv(CHANNELS), GatConv(CHANNELS)):
        theirs = reference(conv)
        for edge in EDGES:
            src, _, dst = edge
            edge_index = edges[edge]
            ours_in = {t: v.clone().requires_grad_() for t, v in x.items()}
            theirs_in = {t: v.clone().requires_grad_() for t, v in x.items()}
            ours = conv(ours_in[src], ours_in[dst], edges_of(edge_index, len(x[dst])))
            if src == dst:
                expected = theirs(theirs_in[src], edge_index)
            else:
                expected = theirs((theirs_in[src], theirs_in[dst]), edge_index)
            torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
            ours.square().sum().backward()
            expected.square().sum().backward()
            for t in {src, dst}:  # no gradient reaching an input is a zero gradient
                grads = [
                    g if g is not None else torch.zeros_like(x[t])
                    for g in (ours_in[t].grad, theirs_in[t].grad)
                ]
                torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)


@settings(max_examples=20, deadline=None)
@given(graphs())
def test_the_hetero_layer_matches_heteroconv_sum(graph: tuple) -> None:
    x, edges, seed = graph
    torch.manual_seed(seed)
    for conv in (SageConv, GatConv):
        ours = HeteroLayer(EDGES, conv, CHANNELS)
        theirs = HeteroConv({edge: reference(ours.convs[edge_key(edge)]) for edge in EDGES}, aggr="sum")
        typed = {edge: edges_of(index, len(x[edge[2]])) for edge, index in edges.items()}
        out, expected = ours(x, typed), theirs(x, edges)
        assert set(out) == set(expected) == {"a", "b"}  # c receives no edge: absent, as in HeteroConv
        for node_type in out:
            torch.testing.assert_close(out[node_type], expected[node_type], rtol=1e-5, atol=1e-6)
