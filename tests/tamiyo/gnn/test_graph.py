"""The graph builder on every host and slot layout, and a decision's graph rebuilt from the log."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from domains.tamiyo.gnn.graph import (
    CLIP,
    EDGE_TYPES,
    FEATURE_DIMS,
    build_graph,
    graph_from_decision,
)
from domains.tamiyo.gnn.masking import ActionMask
from domains.tamiyo.gnn.tensors import NODE_TYPES
from domains.tamiyo.gnn.topology import host_topology
from leyline import pb
from leyline.seed_metrics import HEADROOM_METRIC
from tests.tamiyo.gnn.support import DIGITS, host, topology

HOSTS = ("cnn-lite", "transformer-lite", "custom")


def observation(shape: pb.HostTopology, seeds: list[pb.SeedState] | None = None) -> pb.PolicyObservation:
    slots = len(shape.slots)
    mask = ActionMask(
        operation=np.array([True, False, False]),
        slot=np.zeros((2, slots), dtype=bool),
        blueprint=np.zeros((slots, 2), dtype=bool),
    )
    packet = pb.SystemStatePacket(epoch=4, training_loss=0.5, validation_loss=float("inf"), packet_id=7)
    packet.seeds.extend(
        seeds or [pb.SeedState(slot=s.slot, stage=pb.SEED_STAGE_DORMANT) for s in shape.slots]
    )
    packet.metrics["grad_norm"] = float("nan")
    return pb.PolicyObservation(
        packet=packet,
        topology=shape,
        parameters=10**12,
        catalogue=["BP001", "BP002"],
        slot_costs=[-1] * (2 * slots - 1) + [5000],
        legal=mask.pack(),
    )


def test_topologies_follow_the_forward_pass() -> None:
    cnn = topology("cnn-lite")
    assert [layer.name for layer in cnn.layers] == ["conv1", "conv2", "head"]
    assert [(s.slot, s.after_layer) for s in cnn.slots] == [(0, 0), (1, 1), (2, 1), (3, 2)]  # 3: the widening
    transformer = topology("transformer-lite")
    assert [layer.kind for layer in transformer.layers][:2] == ["linear", "attention"]
    custom = topology("custom")
    assert [s.slot for s in custom.slots] == [0, 1, 4, 7, 9]
    assert [custom.layers[s.after_layer].name for s in custom.slots] == [
        "stem",
        "stem",
        "norm",
        "norm",
        "mix",
    ]
    assert custom.slots[3].kind == pb.SLOT_KIND_SEQUENCE and list(custom.slots[3].shape) == [24, 8]


def test_tracing_leaves_the_host_untouched() -> None:
    model = host("custom")
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.random.get_rng_state()
    host_topology(model, DIGITS)
    assert model.training and torch.equal(torch.random.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("name", HOSTS)
def test_every_node_type_has_nodes_and_receives_messages(name: str) -> None:
    shape = topology(name)
    data = build_graph(observation(shape))
    for node_type in NODE_TYPES:
        assert data[node_type].x.shape[1] == FEATURE_DIMS[node_type] and data[node_type].num_nodes > 0
    assert {dst for _, _, dst in EDGE_TYPES} == set(NODE_TYPES)
    assert data["seed"].num_nodes == len(shape.slots) and data["layer"].num_nodes == len(shape.layers)
    for src, relation, dst in EDGE_TYPES:
        index = data[src, relation, dst].edge_index
        assert index.dtype == torch.long and index.shape[0] == 2
        if index.numel():
            assert int(index[0].max()) < data[src].num_nodes and int(index[1].max()) < data[dst].num_nodes
    parameter_tensors = sum(len(layer.parameter_sizes) for layer in shape.layers)
    assert data["parameter"].num_nodes == parameter_tensors


@pytest.mark.parametrize("name", HOSTS)
def test_features_are_finite_and_bounded_even_for_extreme_inputs(name: str) -> None:
    shape = topology(name)
    seeds = [
        pb.SeedState(
            slot=s.slot,
            stage=pb.SEED_STAGE_TRAINING if i == 0 else pb.SEED_STAGE_DORMANT,
            gradient_norm=float("inf") if i == 0 else 1e30,
            age_epochs=10**6,
            metrics={HEADROOM_METRIC: -1e20},
        )
        for i, s in enumerate(shape.slots)
    ]
    data = build_graph(observation(shape, seeds))
    for tensor in [data[t].x for t in NODE_TYPES] + [data.u, data["seed"].bp_cost]:
        assert bool(torch.isfinite(tensor).all()) and float(tensor.abs().max()) <= CLIP
    assert float(data["seed"].bp_cost[-1, 1]) == pytest.approx(math.log1p(5000))


def test_a_logged_decision_rebuilds_the_same_graph() -> None:
    shape = topology("custom")
    record = observation(shape)
    decision = pb.DecisionMade(epoch=4, observation=record)
    logged = pb.DecisionMade.FromString(decision.SerializeToString())
    catalogue = [
        pb.BlueprintDescriptor(blueprint_id="BP001", risk=0.1),
        pb.BlueprintDescriptor(blueprint_id="BP002"),
    ]
    rebuilt = graph_from_decision(logged, catalogue)
    original = build_graph(record, rebuilt.bp_x)
    for node_type in NODE_TYPES:
        assert torch.equal(rebuilt[node_type].x, original[node_type].x)
    for edge in EDGE_TYPES:
        assert torch.equal(rebuilt[edge].edge_index, original[edge].edge_index)
    assert torch.equal(rebuilt.u, original.u) and torch.equal(
        rebuilt["seed"].legal_bp, original["seed"].legal_bp
    )
    assert float(rebuilt.bp_x[0, 0]) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="no observation"):
        graph_from_decision(pb.DecisionMade(epoch=1))
