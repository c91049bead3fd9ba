"""ε-exploration for the heuristic, so that its logs are usable off-policy (off unless
`HeuristicConfig.exploration_epsilon` > 0).

At each decision the heuristic's own choice is kept with probability 1 - ε; with probability ε a uniform
draw over the legal factored actions replaces it (an operation uniformly among the legal ones, then a slot
uniformly among its legal slots, then a blueprint uniformly among the slot's legal ones), with the same
masks as the learned policy (`domains.tamiyo.gnn.masking.legal_actions`) over the host topology's slots.
DecisionMade records the taken action, its probability under this mixture,
(1 - ε)·[action = heuristic's] + ε·p_uniform(action), and the PolicyObservation the learned policy would
have seen (`domains.tamiyo.gnn.record`), so Simic rebuilds the graph of an exploring decision as it does a
GNN decision's. The heuristic's safety paths outside the factored space (a rollback request) are
deterministic: probability 1, with no observation, like the GNN controller's.
The draw uses a generator seeded by (seed, packet id): deterministic for a seed, identical after a resume.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import numpy as np
from google.protobuf.message import Message

from domains.tamiyo.config import HeuristicConfig
from domains.tamiyo.gnn.masking import (
    CULL,
    GERMINATE,
    NOOP,
    OPERATIONS,
    SLOT_OPERATIONS,
    ActionMask,
)
from domains.tamiyo.gnn.record import ObservationRecorder
from domains.tamiyo.observation import Observation, tiebreak
from domains.tamiyo.policy import Choice, HeuristicPolicy
from domains.tamiyo.state import TamiyoState
from leyline import pb


@dataclass(frozen=True)
class Action:
    operation: int
    slot: int = -1  # index into the slot order
    blueprint: int = -1  # index into the catalogue


def uniform_probability(mask: ActionMask, action: Action) -> float:
    if not mask.allows(action.operation, action.slot, action.blueprint):
        return 0.0
    probability = 1.0 / int(mask.operation.sum())
    if action.operation != NOOP:
        probability /= int(mask.slot[SLOT_OPERATIONS.index(action.operation)].sum())
    if action.operation == GERMINATE:
        probability /= int(mask.blueprint[action.slot].sum())
    return probability


def uniform_draw(mask: ActionMask, rng: random.Random) -> Action:
    operation = rng.choice([int(i) for i in np.flatnonzero(mask.operation)])
    if operation == NOOP:
        return Action(NOOP)
    slot = rng.choice([int(i) for i in np.flatnonzero(mask.slot[SLOT_OPERATIONS.index(operation)])])
    if operation == CULL:
        return Action(CULL, slot)
    return Action(GERMINATE, slot, rng.choice([int(i) for i in np.flatnonzero(mask.blueprint[slot])]))


@dataclass(frozen=True)
class Explored:
    probability: float
    action: pb.FactoredAction
    observation: pb.PolicyObservation | None = None


class ExploringHeuristic(HeuristicPolicy):
    def __init__(self, topology: pb.HostTopology, config: HeuristicConfig | None = None) -> None:
        super().__init__(config)
        self.recorder = ObservationRecorder(topology)
        self._records: dict[str, Explored] = {}

    def decide(self, state: TamiyoState, observation: Observation) -> list[Message]:
        payloads = super().decide(state, observation)
        record = self._records.pop(observation.command_id)
        decision = payloads[0]
        assert isinstance(decision, pb.DecisionMade)
        decision.action_probability = record.probability
        decision.factored_action.CopyFrom(record.action)
        if record.observation is not None:
            decision.observation.CopyFrom(record.observation)
        return payloads

    def _choose(
        self, state: TamiyoState, observation: Observation, level: int, loss_level: int, conservative: bool
    ) -> Choice:
        greedy = super()._choose(state, observation, level, loss_level, conservative)
        slots = self.recorder.slot_order
        catalogue = [d.blueprint_id for d in observation.catalogue]
        command = greedy.command
        factored = pb.FactoredAction(
            operation=greedy.action,
            slot=command.target_slot if command is not None else 0,
            blueprint_id=command.seed_operation.blueprint_id if command is not None else "",
        )
        if greedy.action not in OPERATIONS or (command is None and greedy.action != "noop"):
            self._records[observation.command_id] = Explored(1.0, factored)
            return greedy
        mask, record = self.recorder.record(self, state, observation, level, conservative)
        operation = OPERATIONS.index(greedy.action)
        greedy_action = Action(
            operation,
            slots.index(factored.slot) if operation != NOOP else -1,
            catalogue.index(factored.blueprint_id) if operation == GERMINATE else -1,
        )
        epsilon = self.config.exploration_epsilon
        rng = random.Random(tiebreak(self.config.seed, f"explore:{observation.packet_id}"))
        explore = rng.random() < epsilon
        action = uniform_draw(mask, rng) if explore else greedy_action
        probability = (1.0 - epsilon) * (action == greedy_action) + epsilon * uniform_probability(
            mask, action
        )
        if action == greedy_action:
            self._records[observation.command_id] = Explored(probability, factored, record)
            return greedy
        return self._explored(
            observation, level, conservative, action, Explored(probability, factored, record)
        )

    def _explored(
        self,
        observation: Observation,
        level: int,
        conservative: bool,
        action: Action,
        explored: Explored,
    ) -> Choice:
        reason = f"exploration (ε {self.config.exploration_epsilon:g}): {OPERATIONS[action.operation]}"
        slot = self.recorder.slot_order[action.slot] if action.slot >= 0 else 0
        seeds = {seed.slot: seed for seed in observation.seeds}
        factored = pb.FactoredAction(operation=OPERATIONS[action.operation], slot=slot)
        if action.operation == GERMINATE:
            blueprint = observation.catalogue[action.blueprint]
            factored.blueprint_id = blueprint.blueprint_id
            choice = self._germinate(observation, level, conservative, seeds[slot], blueprint)
        elif action.operation == CULL:
            choice = self._seed_command(observation, level, "cull", pb.SEED_OP_CULL, seeds[slot], reason)
        else:
            choice = Choice("noop", reason)
        self._records[observation.command_id] = replace(explored, action=factored)
        if choice.command is not None:
            choice.command.annotations["reason"] = reason
        return Choice(choice.action, reason, choice.command)
