"""The commands Tamiyo's policies issue, built from a decision's facts: pure, no state of their own.

issuer = Issuer("heuristic-1.0", observation.command_id, observation.now_ms, deadline_ms, level)
germination(issuer, plateau_window, ramp, observation, slot, blueprint)  # a Choice with its command
seed_command(issuer, "cull", pb.SEED_OP_CULL, seed, reason)
rollback(issuer, target_epoch)
"""

from __future__ import annotations

from dataclasses import dataclass

from domains.tamiyo.observation import Observation
from leyline import pb


def default_parameters(descriptor: pb.BlueprintDescriptor) -> dict[str, float]:
    """The template parameters a germination asks for: each range's default."""
    return {name: parameter.default for name, parameter in descriptor.parameter_ranges.items()}


@dataclass(frozen=True)
class Choice:
    action: str  # "noop", "germinate", "advance", "cull", "rollback"
    reason: str
    command: pb.AdaptationCommand | None = None


@dataclass(frozen=True)
class Issuer:
    """Who issues a command and when: the policy's version, the decision's command id and clock, how long
    the command stays executable, and the decision's risk level."""

    policy_version: str
    command_id: str
    now_ms: int
    deadline_ms: int
    level: int

    def command(self, action: str, reason: str) -> pb.AdaptationCommand:
        return pb.AdaptationCommand(
            command_id=self.command_id,
            execution_deadline_ms=self.now_ms + self.deadline_ms,
            issued_by="tamiyo",
            policy_version=self.policy_version,
            annotations={"action": action, "risk_level": str(self.level), "reason": reason},
            issued_at_ms=self.now_ms,
        )


def seed_command(
    issuer: Issuer, action: str, operation: pb.SeedOperation, seed: pb.SeedState, reason: str
) -> Choice:
    command = issuer.command(action, reason)
    command.command_type = pb.COMMAND_TYPE_SEED
    command.target_seed_id = seed.seed_id
    command.target_slot = seed.slot
    command.seed_operation.operation = operation
    command.seed_operation.blueprint_id = seed.blueprint_id
    return Choice(action, f"slot {seed.slot}: {reason}", command)


def germination(
    issuer: Issuer,
    plateau_window: int,
    ramp: int,
    observation: Observation,
    slot: pb.SeedState,
    blueprint: pb.BlueprintDescriptor,
    learned: str = "",
) -> Choice:
    where = (
        "is a widening"
        if observation.slot_kinds.get(slot.slot) == pb.SLOT_KIND_WIDEN
        else "has the most headroom"
    )
    reason = (
        f"validation loss plateaued over {plateau_window} epochs; slot {slot.slot} {where}; "
        f"{blueprint.blueprint_id} ({blueprint.name}, risk {blueprint.risk:.2f}){learned}"
    )
    command = issuer.command("germinate", reason)
    command.command_type = pb.COMMAND_TYPE_SEED
    command.target_seed_id = max((s.seed_id for s in observation.seeds), default=0) + 1
    command.target_slot = slot.slot
    command.seed_operation.operation = pb.SEED_OP_GERMINATE
    command.seed_operation.blueprint_id = blueprint.blueprint_id
    command.seed_operation.alpha_ramp_epochs = ramp
    command.seed_operation.parameters.update(default_parameters(blueprint))
    return Choice("germinate", reason, command)


def rollback(issuer: Issuer, target: int) -> Choice:
    reason = f"loss critical: roll back to epoch {target}, the last safe one"
    command = issuer.command("rollback", reason)
    command.command_type = pb.COMMAND_TYPE_ROLLBACK
    command.rollback.target_epoch = target
    command.rollback.mode = pb.ROLLBACK_MODE_FAST
    command.rollback.reason = reason
    return Choice("rollback", reason, command)
