"""Karn's catalogue as Tamiyo sees it: the descriptors, what a graft would cost at each slot, and the
heuristic controller built on both."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from domains.karn import approval, building, catalog
from domains.karn.blueprint import KarnError
from domains.tamiyo.config import HeuristicConfig
from domains.tamiyo.controller import ParameterEstimator, TamiyoController
from domains.tamiyo.exploration import ExploringHeuristic
from domains.tamiyo.policy import HeuristicPolicy
from leyline import pb
from leyline.signing import Signer

SlotShapes = Mapping[int, tuple[int, tuple[int, ...]]]  # slot → (pb.SlotKind, per-sample shape)


def karn_descriptors(approved: Collection[str] = ()) -> list[pb.BlueprintDescriptor]:
    """Karn's catalogue, with the experimental blueprints approved in the log (`esper blueprints approve`)
    marked approved."""
    return list(approval.with_approvals(catalog.descriptors(), approved))


def karn_estimator(slots: SlotShapes) -> ParameterEstimator:
    """Trainable parameters a blueprint adds at a slot, at its default parameters (Karn builds it once).

    None where the blueprint cannot go: an unknown slot, a slot kind it does not support, a shape it
    rejects.
    """

    def estimate(descriptor: pb.BlueprintDescriptor, slot: int) -> int | None:
        if slot not in slots:
            return None
        kind, shape = slots[slot]
        if kind not in descriptor.slot_kinds:
            return None
        try:
            return building.parameter_count(descriptor.blueprint_id, kind, tuple(shape))
        except KarnError:
            return None

    return estimate


def heuristic_controller(
    run_id: str,
    signer: Signer,
    slots: SlotShapes,
    config: HeuristicConfig | None = None,
    topology: pb.HostTopology | None = None,
    approved: Collection[str] = (),
) -> TamiyoController:
    """The heuristic controller for a host's slots, with Karn's catalogue (the approved experimental
    blueprints included) and its parameter estimates. With `config.exploration_epsilon` > 0 it explores,
    recording observations on the host's `topology`."""
    policy = HeuristicPolicy(config)
    if config is not None and config.exploration_epsilon > 0:
        if topology is None:
            raise ValueError("ε-exploration records each decision's graph: it needs the host's topology")
        policy = ExploringHeuristic(topology, config)
    return TamiyoController(
        run_id,
        signer,
        policy,
        parameter_estimator=karn_estimator(slots),
        slot_kinds={slot: kind for slot, (kind, _) in slots.items()},
        catalogue=karn_descriptors(approved),
    )
