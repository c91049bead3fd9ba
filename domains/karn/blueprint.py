"""What a blueprint is: its tier, risk, slot kinds, template factory and parameter ranges, the uses a
request may be for, and the errors Karn raises. The catalogue of all of them is catalog.py."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from torch import nn

from domains.karn.blocks import CONV, SEQUENCE, WIDEN
from leyline import pb

SAFE = pb.BLUEPRINT_TIER_SAFE
EXPERIMENTAL = pb.BLUEPRINT_TIER_EXPERIMENTAL
ADVERSARIAL = pb.BLUEPRINT_TIER_ADVERSARIAL
BOTH = (CONV, SEQUENCE)
Factory = Callable[[int, tuple[int, ...], Mapping[str, float]], nn.Module]
SLOT_KIND_NAMES: dict[int, str] = {CONV: "conv2d", SEQUENCE: "sequence", WIDEN: "widen"}


class KarnError(Exception):
    """A blueprint request Karn refuses; the message says what and how to fix it."""


class UnknownBlueprint(KarnError):
    pass


class ParameterOutOfRange(KarnError):
    pass


class SlotMismatch(KarnError):
    pass


class NotGraftable(KarnError):
    """Quarantined or unapproved blueprint requested for a live graft."""


class Use(Enum):
    LIVE = "live"  # grafted into a training run
    DRILL = "drill"  # fault drills and offline training: adversarial templates allowed


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    default: float
    integer: bool = True

    def to_pb(self) -> pb.ParameterRange:
        return pb.ParameterRange(min=self.low, max=self.high, default=self.default, integer=self.integer)


def ints(low: int, high: int, default: int) -> Range:
    return Range(float(low), float(high), float(default), integer=True)


def reals(low: float, high: float, default: float) -> Range:
    return Range(low, high, default, integer=False)


@dataclass(frozen=True)
class Blueprint:
    blueprint_id: str
    name: str
    tier: int
    risk: float
    stage: int
    kinds: tuple[int, ...]
    factory: Factory
    parameters: Mapping[str, Range] = field(default_factory=dict)
    description: str = ""
    conservative: bool = False

    @property
    def quarantine_only(self) -> bool:
        return self.tier == ADVERSARIAL

    @property
    def requires_approval(self) -> bool:
        return self.tier == EXPERIMENTAL

    def descriptor(self) -> pb.BlueprintDescriptor:
        descriptor = pb.BlueprintDescriptor(
            blueprint_id=self.blueprint_id,
            name=self.name,
            tier=self.tier,  # type: ignore[arg-type]
            risk=self.risk,
            curriculum_stage=self.stage,
            slot_kinds=list(self.kinds),  # type: ignore[arg-type]
            requires_approval=self.requires_approval,
            approved=not self.requires_approval and not self.quarantine_only,
            quarantine_only=self.quarantine_only,
            description=self.description or (self.factory.__doc__ or self.name).strip().splitlines()[0],
            conservative_pool=self.conservative,
        )
        for name, allowed in self.parameters.items():
            descriptor.parameter_ranges[name].CopyFrom(allowed.to_pb())
        return descriptor

    def defaults(self) -> dict[str, float]:
        return {name: allowed.default for name, allowed in self.parameters.items()}

    def extremes(self) -> tuple[dict[str, float], dict[str, float]]:
        """All parameters at the low end, and all at the high end."""
        low = {name: allowed.low for name, allowed in self.parameters.items()}
        high = {name: allowed.high for name, allowed in self.parameters.items()}
        return low, high
