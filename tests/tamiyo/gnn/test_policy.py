"""The learned policy in Tamiyo's controller: deterministic for a seed, decisions usable off-policy; the
heuristic's ε-exploration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch_geometric.data import Batch

from domains.tamiyo.catalogue import heuristic_controller
from domains.tamiyo.config import HeuristicConfig
from domains.tamiyo.controller import TamiyoController
from domains.tamiyo.exploration import Action, ExploringHeuristic, uniform_probability
from domains.tamiyo.gnn import policy as gnn_policy
from domains.tamiyo.gnn.graph import decision_graph, graph_from_decision
from domains.tamiyo.gnn.masking import GERMINATE, NOOP, OPERATIONS, ActionMask
from domains.tamiyo.gnn.sampling import Sample, evaluate
from domains.tamiyo.gnn.tensors import collate
from domains.tamiyo.policy import HeuristicPolicy
from leyline import decode_payload, pb
from leyline.datadir import DataDir
from leyline.signing import Keyring, Signer
from tests.tamiyo.gnn.support import gnn_controller, topology, verified_in_memory
from tests.tamiyo.scripted import CATALOGUE, PLATEAU_LOSSES, RUN_ID, context, dormant_slots, estimate, packet

KEYRING = Keyring.generate()


def decisions(controller: TamiyoController, epochs: int = 12, slots: int = 3) -> list[pb.DecisionMade]:
    made = []
    for epoch in range(epochs):
        loss = PLATEAU_LOSSES[min(epoch, len(PLATEAU_LOSSES) - 1)]
        output = controller.decide(packet(epoch, loss), context(epoch, dormant_slots(slots)))
        for envelope in output.events:
            if envelope.event_type == "DecisionMade":
                payload = decode_payload(envelope)
                assert isinstance(payload, pb.DecisionMade)
                made.append(payload)
    return made


def fingerprint(made: list[pb.DecisionMade]) -> list[tuple[str, str, float, str]]:
    return [(d.action, d.factored_action.SerializeToString(), d.action_probability, d.reason) for d in made]


def test_decisions_are_deterministic_for_a_seed(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path)
    first = decisions(gnn_controller(verified_in_memory(1), KEYRING, data_dir, seed=5))
    second = decisions(gnn_controller(verified_in_memory(1), KEYRING, data_dir, seed=5))
    other = decisions(gnn_controller(verified_in_memory(1), KEYRING, data_dir, seed=6))
    assert fingerprint(first) == fingerprint(second)
    assert [d.action_probability for d in first] != [d.action_probability for d in other]


def test_a_decision_records_version_probability_action_and_observation(tmp_path: Path) -> None:
    made = decisions(gnn_controller(verified_in_memory(2, "v-two"), KEYRING, DataDir(tmp_path)), epochs=6)
    for decision in made:
        assert decision.policy_name == "gnn" and decision.policy_version == "v-two"
        assert 0.0 < decision.action_probability <= 1.0
        assert decision.factored_action.operation == decision.action
        assert "gnn_value" in decision.inputs_summary and "gnn_risk_level" in decision.inputs_summary
        observation = decision.observation
        assert list(observation.catalogue) == [d.blueprint_id for d in CATALOGUE]
        mask = ActionMask.unpack(
            observation.legal, len(observation.topology.slots), len(observation.catalogue)
        )
        assert mask.operation[0]
        graph = graph_from_decision(pb.DecisionMade.FromString(decision.SerializeToString()), CATALOGUE)
        assert (
            graph["seed"].num_nodes == 4 and graph["layer"].num_nodes == 3
        )  # cnn-lite: 3 conv2d slots, a widening


def test_a_greedy_policy_draws_nothing_and_records_propensity_one(tmp_path: Path) -> None:
    """Held-out evaluation: no draw, so the seed does not matter, the behaviour probability is 1 and the
    network's own probability of the action is kept beside it (the choice itself: test_masking.py)."""
    data_dir = DataDir(tmp_path)
    greedy = decisions(gnn_controller(verified_in_memory(1), KEYRING, data_dir, seed=5, greedy=True))
    other = decisions(gnn_controller(verified_in_memory(1), KEYRING, data_dir, seed=6, greedy=True))
    assert fingerprint(greedy) == fingerprint(other)
    assert all(d.action_probability == 1.0 for d in greedy)
    assert all(0.0 < d.inputs_summary["gnn_probability"] <= 1.0 for d in greedy if d.HasField("observation"))
    assert all("greedy" in d.reason for d in greedy if d.HasField("observation"))


def exploring(epsilon: float, seed: int = 0) -> TamiyoController:
    return TamiyoController(
        RUN_ID,
        Signer(KEYRING),
        ExploringHeuristic(topology("cnn-lite"), HeuristicConfig(seed=seed, exploration_epsilon=epsilon)),
        parameter_estimator=estimate,
        slot_kinds={0: pb.SLOT_KIND_CONV2D, 1: pb.SLOT_KIND_CONV2D, 2: pb.SLOT_KIND_CONV2D},
    )


def test_exploration_is_off_by_default() -> None:
    controller = heuristic_controller(RUN_ID, Signer(KEYRING), {0: (pb.SLOT_KIND_CONV2D, (4, 8, 8))})
    assert type(controller.policy) is HeuristicPolicy
    with pytest.raises(ValueError, match="exploration_epsilon"):
        HeuristicConfig(exploration_epsilon=1.5)
    with pytest.raises(ValueError, match="topology"):  # it could not record the decisions' graphs
        heuristic_controller(
            RUN_ID,
            Signer(KEYRING),
            {0: (pb.SLOT_KIND_CONV2D, (4, 8, 8))},
            HeuristicConfig(exploration_epsilon=0.1),
        )


def test_epsilon_zero_is_the_heuristic_with_propensity_one() -> None:
    plain = decisions(
        TamiyoController(RUN_ID, Signer(KEYRING), HeuristicPolicy(), parameter_estimator=estimate)
    )
    zero = decisions(exploring(0.0))
    assert [d.action for d in zero] == [d.action for d in plain]
    assert all(d.action_probability == 1.0 for d in zero)
    assert "germinate" in [d.action for d in zero]


def test_exploration_takes_legal_actions_and_records_their_propensity() -> None:
    made = decisions(exploring(0.5, seed=3), epochs=30)
    assert all(0.0 < d.action_probability <= 1.0 for d in made)
    explored = [d for d in made if d.reason.startswith("exploration")]
    assert explored and any(d.action_probability < 0.5 for d in explored)
    for decision in made:
        if decision.action == "germinate":
            assert decision.factored_action.blueprint_id in {"BP001", "BP009", "BP016", "BP023"}
    assert fingerprint(made) == fingerprint(decisions(exploring(0.5, seed=3), epochs=30))


def test_exploring_decisions_carry_the_observation_their_graph_and_propensity_come_from() -> None:
    """An exploring heuristic's decision is usable off-policy like a GNN decision: the graph rebuilds from
    the log, the taken action is legal under the recorded mask and the recorded propensity is the
    mixture's, (1 - ε)·[greedy] + ε·p_uniform."""
    epsilon = 0.5
    made = decisions(exploring(epsilon, seed=3), epochs=30)
    factored = [d for d in made if d.HasField("observation")]
    assert len(factored) == len(made)  # no safety path on these packets: every decision is factored
    for decision in factored:
        rebuilt = pb.DecisionMade.FromString(decision.SerializeToString())
        graph = graph_from_decision(rebuilt, CATALOGUE)
        observation = decision.observation
        slots = [s.slot for s in observation.topology.slots]
        assert graph["seed"].num_nodes == len(slots) == 4
        assert observation.packet.packet_id and list(observation.catalogue) == [
            d.blueprint_id for d in CATALOGUE
        ]
        mask = ActionMask.unpack(observation.legal, len(slots), len(observation.catalogue))
        operation = OPERATIONS.index(decision.factored_action.operation)
        slot = slots.index(decision.factored_action.slot) if operation != NOOP else -1
        catalogue = list(observation.catalogue)
        blueprint = catalogue.index(decision.factored_action.blueprint_id) if operation == GERMINATE else -1
        action = Action(operation, slot, blueprint)
        assert mask.allows(operation, slot, blueprint)
        uniform = uniform_probability(mask, action)
        explored = decision.reason.startswith("exploration")
        if explored:
            assert decision.action_probability == pytest.approx(epsilon * uniform)
        else:
            assert decision.action_probability == pytest.approx(1 - epsilon + epsilon * uniform)


def logged(controller: TamiyoController, slots: int, epochs: int) -> list[pb.DecisionMade]:
    made = []
    for epoch in range(epochs):
        seeds = dormant_slots(slots)
        seeds[epoch % slots].stage = pb.SEED_STAGE_TRAINING if epoch % 2 else pb.SEED_STAGE_DORMANT
        output = controller.decide(packet(epoch, 0.4), context(epoch, seeds))
        made.extend(
            d
            for e in output.events
            if isinstance(d := decode_payload(e), pb.DecisionMade) and d.HasField("observation")
        )
    return made


def test_batched_evaluation_gives_the_logged_probabilities(tmp_path: Path) -> None:
    """Off-policy use: the log-probability of each logged action under the same weights, on one batch of
    the rebuilt graphs of two hosts (5 and 4 slots, interleaved), is the probability the decision recorded;
    the disjoint union of `collate` and torch_geometric's Batch of the HeteroData give the same figures."""
    policy = verified_in_memory(3)
    custom = logged(gnn_controller(policy, KEYRING, DataDir(tmp_path), host_name="custom", seed=2), 5, 16)
    cnn = logged(gnn_controller(policy, KEYRING, DataDir(tmp_path), host_name="cnn-lite", seed=5), 4, 16)
    made = [d for pair in zip(custom, cnn, strict=False) for d in pair]
    rows = []
    for d in made:
        operation = OPERATIONS.index(d.factored_action.operation)
        slots = [s.slot for s in d.observation.topology.slots]
        slot = slots.index(d.factored_action.slot) if operation != NOOP else -1
        graft = (
            list(d.observation.catalogue).index(d.factored_action.blueprint_id)
            if operation == GERMINATE
            else -1
        )
        rows.append((operation, slot, graft))
    operation, slot, graft = torch.tensor(rows, dtype=torch.long).unbind(1)
    union = collate([decision_graph(d, CATALOGUE) for d in made])
    hetero = Batch.from_data_list([graph_from_decision(d, CATALOGUE) for d in made])
    with torch.no_grad():
        out = evaluate(policy.network, union, operation, slot, graft)
        reference = evaluate(policy.network, hetero, operation, slot, graft)
    expected = torch.tensor([d.action_probability for d in made])
    assert torch.allclose(out["log_prob"].exp(), expected, rtol=1e-4, atol=1e-6)
    for name, value in out.items():
        torch.testing.assert_close(value, reference[name])
    assert {d.factored_action.operation for d in made} == {"noop", "germinate", "cull"}


def test_a_decision_runs_on_one_thread_and_restores_the_runs_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    real = gnn_policy.sample

    def counting(*args: Any) -> Sample:
        seen.append(torch.get_num_threads())
        return real(*args)

    monkeypatch.setattr(gnn_policy, "sample", counting)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        decisions(gnn_controller(verified_in_memory(1), KEYRING, DataDir(tmp_path)), epochs=3)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
    assert seen and set(seen) == {1}
