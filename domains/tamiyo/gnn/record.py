"""What a decision records so that it is usable off-policy: the PolicyObservation from which
`graph.graph_from_decision` rebuilds its graph (packet, host topology, risk level, conservative mode,
legal-action mask, embargoed slots, the [slots × catalogue] parameter estimates). The packet's metrics
carry what the network reads beyond the epoch's own figures: the hook's latency level and whether the
validation loss is on the plateau the heuristic germinates on (`observation.loss_plateau`, 1 or 0).

Shared by the learned policy and the heuristic's ε-exploration; free of torch-geometric, so a heuristic
run that explores does not import it.
"""

from __future__ import annotations

from collections.abc import Sequence

from domains.tamiyo.gnn.masking import ActionMask, legal_actions
from domains.tamiyo.observation import Observation, hook_latency, loss_plateau
from domains.tamiyo.policy import HeuristicPolicy
from domains.tamiyo.risk import RiskThresholds, signal_level
from domains.tamiyo.state import TamiyoState
from leyline import pb

COST_MATRICES_KEPT = 64
HOOK_LATENCY_LEVEL = "hook_latency_level"  # the packet metric the network reads of the hook's cost
LOSS_PLATEAU = "loss_plateau"  # the packet metric: 1 when the validation loss is on a plateau, else 0


def hook_latency_level(observation: Observation) -> int:
    """The previous hook's latency as the risk engine's level (0 within the budget): the network sees an
    overrun, never the milliseconds below it, which measure the machine's load and not the run."""
    return signal_level(hook_latency(observation), RiskThresholds().hook_latency_ratio)


def policy_observation(
    observation: Observation,
    topology: pb.HostTopology,
    level: int,
    conservative: bool,
    mask: ActionMask,
    embargoed: list[int],
    plateau: bool,
    costs: Sequence[int] = (),
) -> pb.PolicyObservation:
    """The record of one decision; `plateau` is `observation.loss_plateau`'s reading and `costs` the
    [slots × catalogue] matrix of `cost_matrix`."""
    packet = pb.SystemStatePacket(
        epoch=observation.epoch,
        training_loss=observation.training_loss,
        validation_loss=observation.validation_loss,
        validation_accuracy=observation.validation_accuracy,
        run_id=observation.run_id,
        packet_id=observation.packet_id,
        seeds=observation.seeds,
        metrics={
            "grad_norm": observation.grad_norm,
            "hook_ms": observation.hook_ms,
            HOOK_LATENCY_LEVEL: float(hook_latency_level(observation)),
            LOSS_PLATEAU: 1.0 if plateau else 0.0,
        },
    )
    return pb.PolicyObservation(
        packet=packet,
        topology=topology,
        parameters=observation.parameters,
        risk_level=level,
        conservative=conservative,
        slot_costs=costs,
        catalogue=[d.blueprint_id for d in observation.catalogue],
        legal=mask.pack(),
        embargoed_slots=embargoed,
    )


def cost_matrix(observation: Observation, slot_order: Sequence[int]) -> list[int]:
    """Parameters each catalogue entry adds at each slot, row-major [slots × catalogue], -1 where unknown."""
    costs = observation.blueprint_costs
    return [costs.get((d.blueprint_id, slot), -1) for slot in slot_order for d in observation.catalogue]


def embargoed_slots(state: TamiyoState, observation: Observation, slot_order: Sequence[int]) -> list[int]:
    """The slots under Tamiyo's embargo after a cull."""
    return [
        slot
        for slot in slot_order
        if (culled := state.cull_epoch(slot)) is not None
        and observation.epoch - culled < observation.lifecycle.embargo_epochs
    ]


class ObservationRecorder:
    """The legal actions and the PolicyObservation of each decision on one host topology."""

    def __init__(self, topology: pb.HostTopology) -> None:
        self.topology = topology
        self.slot_order = [s.slot for s in topology.slots]
        # Cost matrices by the identity of the estimates they were built from: the GNN controller hands the
        # same mapping for the same layout (estimates never change in a run); the mapping is kept alongside,
        # so its id is not reused while the entry lives.
        self._costs: dict[int, tuple[object, list[int]]] = {}

    def record(
        self,
        policy: HeuristicPolicy,
        state: TamiyoState,
        observation: Observation,
        level: int,
        conservative: bool,
    ) -> tuple[ActionMask, pb.PolicyObservation]:
        mask = legal_actions(policy, state, observation, level, conservative, self.slot_order)
        estimates = observation.blueprint_costs
        cached = self._costs.get(id(estimates))
        if cached is None or cached[0] is not estimates:
            if len(self._costs) >= COST_MATRICES_KEPT:
                self._costs.pop(next(iter(self._costs)))
            cached = self._costs[id(estimates)] = (estimates, cost_matrix(observation, self.slot_order))
        embargoed = embargoed_slots(state, observation, self.slot_order)
        plateau = loss_plateau(policy.config, state, observation)
        return mask, policy_observation(
            observation, self.topology, level, conservative, mask, embargoed, plateau, cached[1]
        )
