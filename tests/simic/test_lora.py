"""LoRA over the GNN policy: torch-geometric linears swapped with identical output, the wrapped policy's
output equal to the base policy's at attach time, only adapter parameters train, heads untouched, and an
adapter swapped in by state dict."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch as GraphBatch
from torch_geometric.data import HeteroData
from torch_geometric.nn.dense import Linear as GeometricLinear

from domains.simic.config import AdapterConfig, TrainingConfig, trainable_network
from domains.simic.gnn import GnnActorCritic
from domains.simic.lora import adapter_state, load_adapter, target_modules
from domains.simic.ppo import Batch, PPOConfig, make_optimizer, update
from domains.tamiyo.gnn.graph import graph_from_decision
from domains.tamiyo.gnn.network import initial_network
from leyline import decode_payload, pb
from leyline.datadir import DataDir
from leyline.signing import Keyring
from tests.tamiyo.gnn.support import gnn_controller, verified_in_memory
from tests.tamiyo.scripted import CATALOGUE, context, dormant_slots, packet


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> list[pb.DecisionMade]:
    """Sampled decisions of the learned policy on a five-slot host."""
    data_dir = DataDir(tmp_path_factory.mktemp("lora"))
    controller = gnn_controller(
        verified_in_memory(3), Keyring.generate(), data_dir, host_name="custom", seed=2
    )
    made: list[pb.DecisionMade] = []
    for epoch in range(12):
        seeds = dormant_slots(5)
        seeds[epoch % 5].stage = pb.SEED_STAGE_TRAINING if epoch % 2 else pb.SEED_STAGE_DORMANT
        output = controller.decide(packet(epoch, 0.4), context(epoch, seeds))
        made.extend(
            d
            for e in output.events
            if isinstance(d := decode_payload(e), pb.DecisionMade) and d.HasField("observation")
        )
    return made


def outputs(network: nn.Module, graphs: list[HeteroData]) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return {k: v.clone() for k, v in network(GraphBatch.from_data_list(graphs)).items()}


def test_lora_starts_equal_to_the_base_and_trains_only_adapters(
    logged: list[pb.DecisionMade], tmp_path: Path
) -> None:
    graphs = [graph_from_decision(d, CATALOGUE) for d in logged]
    base = outputs(initial_network(3), graphs)
    assert not any(isinstance(m, GeometricLinear) for m in initial_network(3).modules())
    network = trainable_network(initial_network(3), TrainingConfig(lora=True, adapter=AdapterConfig(rank=2)))
    assert not any("head" in name for name in target_modules(network))
    for key, value in outputs(network, graphs).items():
        assert torch.allclose(value, base[key], atol=1e-6), key
    trainable = {n for n, p in network.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in network.named_parameters()}

    policy = GnnActorCritic(network)
    actions = torch.tensor([(0, -1, -1)] * len(graphs), dtype=torch.long)
    with torch.no_grad():
        evaluation = policy.evaluate(graphs, actions)
    generator = torch.Generator().manual_seed(0)
    advantages = torch.randn(len(graphs), generator=generator)
    batch = Batch(
        graphs, actions, evaluation.log_prob, evaluation.value, advantages, evaluation.value + advantages
    )
    config = PPOConfig(learning_rate=1e-2, target_kl=None)
    network.train()
    update(policy, make_optimizer(policy, config), batch, config, generator)
    changed = {n for n, p in network.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable
    assert any("lora_B" in n for n in changed)

    adapter = adapter_state(network)
    fresh = trainable_network(initial_network(3), TrainingConfig(lora=True, adapter=AdapterConfig(rank=2)))
    load_adapter(fresh, adapter)
    network.eval()
    for key, value in outputs(fresh, graphs).items():
        assert torch.allclose(value, outputs(network, graphs)[key], atol=1e-6), key
    with pytest.raises(ValueError, match="adapter keys differ"):
        load_adapter(fresh, {**adapter, "encoders.layer.lora_A.other.weight": torch.zeros(1)})
