"""Karn's catalogue as Tamiyo sees it: the descriptors, and what a graft would cost at each slot."""

from __future__ import annotations

from collections.abc import Mapping

from domains.karn import catalog
from domains.tamiyo.controller import ParameterEstimator
from leyline import pb

SlotShapes = Mapping[int, tuple[int, tuple[int, ...]]]  # slot → (pb.SlotKind, per-sample shape)


def karn_descriptors() -> list[pb.BlueprintDescriptor]:
    return catalog.descriptors()


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
            return catalog.parameter_count(descriptor.blueprint_id, kind, tuple(shape))
        except catalog.KarnError:
            return None

    return estimate
