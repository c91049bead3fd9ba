"""Hand-built inputs for Tamiyo's tests: a small catalogue, packets, contexts and seeds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from domains.tamiyo.observation import Observation
from leyline import pb
from leyline.controller import ControllerContext
from leyline.lifecycle import LifecycleConfig
from leyline.seed_metrics import HEADROOM_METRIC

RUN_ID = "rtest0001"
HOST_PARAMETERS = 700
LIFECYCLE = LifecycleConfig()


def descriptor(
    blueprint_id: str,
    risk: float,
    *,
    tier: int = pb.BLUEPRINT_TIER_SAFE,
    conservative: bool = False,
    requires_approval: bool = False,
    approved: bool = False,
    quarantine: bool = False,
    stage: int = 1,
) -> pb.BlueprintDescriptor:
    return pb.BlueprintDescriptor(
        blueprint_id=blueprint_id,
        name=blueprint_id.lower(),
        tier=tier,  # type: ignore[arg-type]
        risk=risk,
        curriculum_stage=stage,
        slot_kinds=[pb.SLOT_KIND_CONV2D],
        parameter_ranges={"hidden": pb.ParameterRange(min=2, max=32, default=8, integer=True)},
        requires_approval=requires_approval,
        approved=approved,
        quarantine_only=quarantine,
        conservative_pool=conservative,
    )


CATALOGUE = (
    descriptor("BP001", 0.0, conservative=True, stage=0),
    descriptor("BP009", 0.2, conservative=True, stage=2),
    descriptor("BP016", 0.35, stage=3),
    descriptor("BP023", 0.45, stage=4),
    descriptor("BP036", 0.6, tier=pb.BLUEPRINT_TIER_EXPERIMENTAL, requires_approval=True, stage=5),
    descriptor("BP045", 0.9, tier=pb.BLUEPRINT_TIER_ADVERSARIAL, quarantine=True, stage=6),
)
COSTS = {"BP001": 0, "BP009": 300, "BP016": 500, "BP023": 900, "BP036": 2000, "BP045": 50}


def estimate(blueprint: pb.BlueprintDescriptor, slot: int) -> int | None:
    return COSTS[blueprint.blueprint_id]


def dormant_slots(count: int = 2, headroom: Sequence[float] = ()) -> list[pb.SeedState]:
    seeds = []
    for slot in range(count):
        seed = pb.SeedState(slot=slot, stage=pb.SEED_STAGE_DORMANT)
        if slot < len(headroom):
            seed.metrics[HEADROOM_METRIC] = headroom[slot]
        seeds.append(seed)
    return seeds


def packet(
    epoch: int,
    validation_loss: float,
    validation_accuracy: float = 0.9,
    training_loss: float | None = None,
    grad_norm: float = 1.0,
) -> pb.SystemStatePacket:
    return pb.SystemStatePacket(
        epoch=epoch,
        training_loss=validation_loss if training_loss is None else training_loss,
        validation_loss=validation_loss,
        validation_accuracy=validation_accuracy,
        metrics={"grad_norm": grad_norm},
        run_id=RUN_ID,
        packet_id=1000 + epoch,
        hardware=pb.HardwareContext(device="cpu", memory_used_gb=1.0, memory_total_gb=16.0),
    )


def context(
    epoch: int,
    seeds: Sequence[pb.SeedState] | None = None,
    *,
    parameters: int = HOST_PARAMETERS,
    hook_ms: float = 2.0,
    applied: Sequence[str] = (),
    catalogue: Sequence[pb.BlueprintDescriptor] = CATALOGUE,
    lifecycle: LifecycleConfig = LIFECYCLE,
) -> ControllerContext:
    return ControllerContext(
        run_id=RUN_ID,
        epoch=epoch,
        seeds=list(dormant_slots(headroom=(1.0, 0.5)) if seeds is None else seeds),
        catalogue=list(catalogue),
        parameters=parameters,
        last_hook_ms=hook_ms,
        applied_commands=tuple(applied),
        lifecycle=lifecycle,
    )


def observation(
    epoch: int,
    validation_loss: float,
    *,
    seeds: Sequence[pb.SeedState] | None = None,
    validation_accuracy: float = 0.9,
    training_loss: float | None = None,
    grad_norm: float = 1.0,
    hook_ms: float = 2.0,
    parameters: int = HOST_PARAMETERS,
    applied: Sequence[str] = (),
    catalogue: Sequence[pb.BlueprintDescriptor] = CATALOGUE,
    lifecycle: LifecycleConfig = LIFECYCLE,
    run_epochs: int | None = None,
) -> Observation:
    seed_list = tuple(dormant_slots() if seeds is None else seeds)
    return Observation(
        run_id=RUN_ID,
        epoch=epoch,
        packet_id=1000 + epoch,
        training_loss=validation_loss if training_loss is None else training_loss,
        validation_loss=validation_loss,
        validation_accuracy=validation_accuracy,
        grad_norm=grad_norm,
        memory_pressure=1.0 / 16.0,
        hook_ms=hook_ms,
        parameters=parameters,
        seeds=seed_list,
        catalogue=tuple(catalogue),
        applied_commands=tuple(applied),
        command_id=f"c{epoch:04d}",
        lifecycle=lifecycle,
        run_epochs=run_epochs,
        now_ms=1_800_000_000_000 + epoch,
        blueprint_costs={
            (d.blueprint_id, s.slot): COSTS[d.blueprint_id]
            for d in catalogue
            for s in seed_list
            if d.blueprint_id in COSTS
        },
    )


# Validation loss improves for 4 epochs, then sits on a plateau.
PLATEAU_LOSSES = (1.0, 0.7, 0.5, 0.4, 0.4, 0.399, 0.4, 0.401, 0.4, 0.4, 0.4, 0.4)
# The heuristic's knobs of a policy that waits for that plateau (3 epochs without a 1 % improvement: first
# at epoch 6) and grows one seed at a time, for tests about what follows a germination. The defaults grow
# while the host still learns (test_policy.test_the_default_grows_while_the_host_still_learns).
PLATEAU_SCHEDULE: Mapping[str, Any] = {
    "plateau_window": 3,
    "plateau_epsilon": 0.01,
    "germination_cooldown_epochs": 3,
    "max_concurrent_seeds": 1,
}
