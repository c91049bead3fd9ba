"""A held-out run's figures from its events: reward without shaping, forbidden germinations, lifecycle
violations (illegal transitions only), safe no-ops; an absent or unfinished run is not completed."""

from __future__ import annotations

import math

import pytest

from domains.simic.outcomes import Wanted, held_out_runs
from domains.simic.reward import RewardConfig
from leyline import new_envelope, pb

CONFIG = RewardConfig()


def event(kind: str, payload: object, run_id: str = "r1") -> pb.EventEnvelope:
    return new_envelope(kind, f"run-{run_id}", payload, run_id=run_id)  # type: ignore[arg-type]


def epoch(accuracy: float, parameters: int) -> pb.EventEnvelope:
    state = pb.SystemStatePacket(validation_accuracy=accuracy)
    return event("EpochCompleted", pb.EpochCompleted(state=state, parameters=parameters, test_accuracy=0.5))


def germinate(blueprint: str) -> pb.EventEnvelope:
    action = pb.FactoredAction(operation="germinate", slot=0, blueprint_id=blueprint)
    return event(
        "DecisionMade", pb.DecisionMade(action="germinate", factored_action=action, action_probability=0.5)
    )


def test_figures_of_a_completed_run() -> None:
    safe = pb.BlueprintDescriptor(blueprint_id="BP001", tier=pb.BLUEPRINT_TIER_SAFE)
    adversarial = pb.BlueprintDescriptor(
        blueprint_id="BP043", quarantine_only=True, tier=pb.BLUEPRINT_TIER_SAFE
    )
    events = [
        event("BlueprintRegistered", pb.BlueprintRegistered(descriptor=safe), ""),
        event("BlueprintRegistered", pb.BlueprintRegistered(descriptor=adversarial), ""),
        epoch(0.5, 1000),
        germinate("BP001"),
        germinate("BP043"),
        germinate("BP999"),  # not registered: not known to be graftable
        event("DecisionMade", pb.DecisionMade(action="noop", reason="safe no-op: timeout")),
        event("CommandRejected", pb.CommandRejected(code="illegal_transition")),
        event("CommandRejected", pb.CommandRejected(code="gate_failed")),
        event("SeedTransitioned", pb.SeedTransitioned(to_stage=pb.SEED_STAGE_CULLED)),
        epoch(0.8, 1500),
        event("RunCompleted", pb.RunCompleted(test_accuracy=0.75, parameters=1500)),
        event("EpochCompleted", pb.EpochCompleted(), "other"),  # another run's
    ]
    [run, absent] = held_out_runs(
        events, {"r1": Wanted("candidate", "t", 7), "r2": Wanted("active", "t", 7)}, CONFIG
    )
    assert run.completed and run.seed == 7 and run.arm == "candidate"
    assert run.reward == pytest.approx(0.8 - CONFIG.parameter_rent * math.log2(1.5) - CONFIG.cull_penalty)
    assert run.test_accuracy == pytest.approx(0.75) and run.parameters == 1500
    assert run.forbidden_blueprints == 2 and run.lifecycle_violations == 1
    assert run.decisions == 4 and run.fallbacks == 1 and run.nonfinite == 0
    assert not absent.completed and math.isnan(absent.reward)


def test_a_run_without_its_end_is_not_completed_and_nan_probabilities_count() -> None:
    nan = event("DecisionMade", pb.DecisionMade(action="noop", action_probability=math.nan))
    [run] = held_out_runs([epoch(0.5, 10), nan], {"r1": Wanted("candidate", "t", 0)}, CONFIG)
    assert not run.completed and run.nonfinite == 1
