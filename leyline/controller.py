"""The controller contract Tolaria calls at each epoch boundary (SPEC §8, §10).

Tamiyo implements it, and `NoOpController` is the controller of a run that does not grow. The controller
returns events to append (DecisionMade, ConservativeModeChanged, FieldReportIssued, …) and, when it acts,
the signed envelope of an AdaptationCommandIssued event, which Tolaria hands to Kasmina for verification
and execution. `ControllerContext.lifecycle` carries the lifecycle limits Kasmina enforces, so a
controller plans with the run's own numbers instead of restating them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from leyline import pb
from leyline.lifecycle import LifecycleConfig

DEFAULT_HOOK_BUDGET_MS = 18.0  # SPEC §8: the whole end-of-epoch hook
# What the controller is told of the end-of-epoch hook's cost (RunConfig.controller_timing): "measured",
# the previous hook's CPU time (a risk signal; an overrun enters conservative mode), or "none", nothing (0
# ms, no overrun) so that its decisions do not depend on the machine's load: Simic's episodes, whose
# decisions compare policies and train them. The hook is timed and its events recorded either way.
TIMING_MEASURED = "measured"
TIMING_NONE = "none"
CONTROLLER_TIMINGS = (TIMING_MEASURED, TIMING_NONE)


@dataclass(frozen=True)
class ControllerContext:
    run_id: str
    epoch: int
    seeds: Sequence[pb.SeedState]
    catalogue: Sequence[pb.BlueprintDescriptor]
    parameters: int  # trainable parameters of the host with its seeds
    last_hook_ms: float  # the previous end-of-epoch hook's CPU time on the training thread (ms)
    applied_commands: Sequence[str] = ()  # command ids Kasmina applied at the previous boundary
    hook_budget_ms: float = DEFAULT_HOOK_BUDGET_MS  # the run's budget for the end-of-epoch hook
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)  # the limits Kasmina enforces
    # the run's last epoch: Kasmina refuses a germination that cannot reach its verdict by then. None: no end
    run_epochs: int | None = None


@dataclass
class ControllerOutput:
    events: list[pb.EventEnvelope] = field(default_factory=list)
    command: pb.EventEnvelope | None = None  # a signed AdaptationCommandIssued envelope


class Controller(Protocol):
    policy_name: str
    policy_version: str
    # Whether decide() reads the dormant slots' headroom (SeedState.metrics[HEADROOM_METRIC]): Tolaria
    # measures it only for such a controller, its hooks costing a small host a few per cent of each step.
    measures_headroom: bool

    def decide(self, packet: pb.SystemStatePacket, context: ControllerContext) -> ControllerOutput: ...

    def enter_conservative_mode(self, reason: str, epoch: int) -> list[pb.EventEnvelope]:
        """Called by Tolaria when the end-of-epoch hook overran its budget."""
        ...

    def state_dict(self) -> Mapping[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class NoOpController:
    """Never acts: the controller of a run without growth, and the baseline of `esper bench run`."""

    policy_name = "noop"
    policy_version = "1"
    measures_headroom = False

    def decide(self, packet: pb.SystemStatePacket, context: ControllerContext) -> ControllerOutput:
        return ControllerOutput()

    def enter_conservative_mode(self, reason: str, epoch: int) -> list[pb.EventEnvelope]:
        return []

    def state_dict(self) -> Mapping[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        return None
