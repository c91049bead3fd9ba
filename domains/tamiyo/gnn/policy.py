"""The learned policy: Tamiyo's risk engine, conservative mode and field reports (inherited from the
heuristic) around a masked, sampled choice by the policy network.

Per decision: the risk level and conservative mode as the heuristic computes them; a loss signal at the
rollback level keeps the heuristic's deterministic safety path (cull of a seed with bad evidence, else a
rollback request; probability 1); otherwise the legal-action mask (`masking.legal_actions`), the
PolicyObservation and its graph, and one factored sample drawn with a generator seeded by
(config.seed, packet id), so the decision is deterministic for a seed and identical after a resume; with
`config.greedy` (held-out evaluation) the most probable legal action instead, no draw.
DecisionMade records the version, the action's probability under the policy that took it (1 for a greedy
decision, as for any deterministic one), the factored action and the observation; `inputs_summary` adds
the network's value estimate and predicted risk level, and for a greedy decision the network's probability
of the action (`gnn_probability`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from google.protobuf.message import Message

from domains.tamiyo.config import HeuristicConfig
from domains.tamiyo.gnn.graph import BLUEPRINT_DIM, blueprint_rows, policy_graph
from domains.tamiyo.gnn.masking import CULL, GERMINATE, OPERATIONS
from domains.tamiyo.gnn.network import PolicyNetwork
from domains.tamiyo.gnn.record import ObservationRecorder
from domains.tamiyo.gnn.sampling import Sample, one_thread, sample
from domains.tamiyo.observation import Observation, tiebreak
from domains.tamiyo.policy import Choice, HeuristicPolicy
from domains.tamiyo.risk import RiskAction, action_for
from domains.tamiyo.state import TamiyoState
from leyline import pb

POLICY_NAME = "gnn"


@dataclass(frozen=True)
class Recorded:
    probability: float
    action: pb.FactoredAction
    observation: pb.PolicyObservation | None
    value: float | None = None
    risk_level: int | None = None
    network_probability: float | None = None  # of a greedy decision (its behaviour probability is 1)


class GnnPolicy(HeuristicPolicy):
    name = POLICY_NAME

    def __init__(
        self,
        network: PolicyNetwork,
        version: str,
        topology: pb.HostTopology,
        config: HeuristicConfig | None = None,
    ) -> None:
        super().__init__(config)
        self.network = network.eval()
        self.version = version
        self.topology = topology
        self.slot_order = [s.slot for s in topology.slots]
        self._records: dict[str, Recorded] = {}
        self.last_observation: pb.PolicyObservation | None = None  # of the last sampled decision
        self._blueprints: tuple[tuple[str, ...], torch.Tensor] = ((), torch.zeros((0, BLUEPRINT_DIM)))
        self.recorder = ObservationRecorder(topology)

    def decide(self, state: TamiyoState, observation: Observation) -> list[Message]:
        payloads = super().decide(state, observation)
        record = self._records.pop(observation.command_id)
        decision = payloads[0]
        assert isinstance(decision, pb.DecisionMade)
        decision.action_probability = record.probability
        decision.factored_action.CopyFrom(record.action)
        self.last_observation = record.observation
        if record.observation is not None:
            decision.observation.CopyFrom(record.observation)
        if record.value is not None and record.risk_level is not None:
            decision.inputs_summary["gnn_value"] = record.value
            decision.inputs_summary["gnn_risk_level"] = float(record.risk_level)
        if record.network_probability is not None:
            decision.inputs_summary["gnn_probability"] = record.network_probability
        return payloads

    def graph_inputs(
        self, state: TamiyoState, observation: Observation, level: int, conservative: bool
    ) -> pb.PolicyObservation:
        return self.recorder.record(self, state, observation, level, conservative)[1]

    @property
    def features(self) -> torch.Tensor:
        """The blueprint features of the last catalogue seen."""
        return self._blueprints[1]

    def blueprint_features(self, observation: Observation) -> torch.Tensor:
        ids = tuple(d.blueprint_id for d in observation.catalogue)
        if ids != self._blueprints[0]:
            rows = blueprint_rows(observation.catalogue)
            self._blueprints = (ids, torch.tensor(rows, dtype=torch.float32).reshape(-1, BLUEPRINT_DIM))
        return self._blueprints[1]

    def sample(self, observation: pb.PolicyObservation, features: torch.Tensor) -> Sample:
        generator = (
            None
            if self.config.greedy
            else torch.Generator().manual_seed(
                tiebreak(self.config.seed, f"gnn:{observation.packet.packet_id}")
            )
        )
        with one_thread():
            return sample(self.network, policy_graph(observation, features), generator)

    def _choose(
        self, state: TamiyoState, observation: Observation, level: int, loss_level: int, conservative: bool
    ) -> Choice:
        config = self.config
        if action_for(level, loss_level, config.block_level, config.rollback_level) is RiskAction.ROLLBACK:
            choice = super()._choose(state, observation, level, loss_level, conservative)
            command = choice.command
            action = pb.FactoredAction(
                operation=choice.action,
                slot=command.target_slot if command is not None else 0,
                blueprint_id=command.seed_operation.blueprint_id if command is not None else "",
            )
            self._records[observation.command_id] = Recorded(1.0, action, None)
            return choice
        record = self.graph_inputs(state, observation, level, conservative)
        drawn = self.sample(record, self.blueprint_features(observation))
        operation = OPERATIONS[drawn.operation]
        slot = self.slot_order[drawn.slot] if drawn.slot >= 0 else 0
        blueprint = observation.catalogue[drawn.blueprint] if drawn.blueprint >= 0 else None
        action = pb.FactoredAction(
            operation=operation, slot=slot, blueprint_id=blueprint.blueprint_id if blueprint else ""
        )
        greedy = self.config.greedy
        self._records[observation.command_id] = Recorded(
            1.0 if greedy else drawn.probability,
            action,
            record,
            drawn.value,
            drawn.risk_level,
            drawn.probability if greedy else None,
        )
        how = "greedy, the network's probability" if greedy else "with probability"
        reason = f"{POLICY_NAME} {self.version}: {operation} {how} {drawn.probability:.3f}"
        seeds = {s.slot: s for s in observation.seeds}
        if drawn.operation == GERMINATE and blueprint is not None:
            dormant = seeds.get(slot, pb.SeedState(slot=slot, stage=pb.SEED_STAGE_DORMANT))
            choice = self._germinate(observation, level, conservative, dormant, blueprint)
            assert choice.command is not None
            reason += f": slot {slot}, {blueprint.blueprint_id} ({blueprint.name}, risk {blueprint.risk:.2f})"
            choice.command.annotations["reason"] = reason
            return dataclasses.replace(choice, reason=reason)
        if drawn.operation == CULL:
            return self._seed_command(observation, level, "cull", pb.SEED_OP_CULL, seeds[slot], reason)
        return Choice("noop", reason)
