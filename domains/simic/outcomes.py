"""What each held-out run did, read from its events: the figures the validation gate decides on.

For every run id asked for, one pass over the log gives a `gate.HeldOutRun`:
- completed: a RunCompleted (a RunFailed or a missing end is not completed);
- reward: `reward.run_return` from the last EpochCompleted's validation accuracy and parameters, the
  first one's parameters, the CULLED seed transitions and the RollbackCompleted events of the run;
- test accuracy and parameters: RunCompleted's (reported beside, never in the reward);
- forbidden blueprints: germinations (DecisionMade's factored action) of a blueprint whose registered
  descriptor may not be grafted (`domains.tamiyo.observation.graftable`: adversarial, quarantine-only,
  outside the safe tier) or that is not registered at all;
- lifecycle violations: CommandRejected events of the run with the code `illegal_transition` (a command
  the seed lifecycle forbids in the slot's stage; Kasmina's own quality gates refusing a germination,
  `gate_failed` / `gate_not_met`, judge the blueprint and the slot, not the policy);
- non-finite: DecisionMade figures (action probability, inputs summary) that are NaN or infinite.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from domains.simic.gate import HeldOutRun
from domains.simic.reward import EpisodeOutcome, RewardConfig, run_return
from domains.tamiyo.observation import graftable
from eventstore import EventFilter
from leyline import decode_payload, pb

ILLEGAL_TRANSITION = "illegal_transition"  # Kasmina's code for a command the seed lifecycle forbids
FALLBACK_REASON = "safe no-op"  # how Tamiyo's controller words the decision that replaces a failed one
READ = EventFilter(
    event_types=frozenset(
        {
            "BlueprintRegistered",
            "EpochCompleted",
            "DecisionMade",
            "SeedTransitioned",
            "RollbackCompleted",
            "CommandRejected",
            "RunCompleted",
            "RunFailed",
        }
    )
)


@dataclass(frozen=True)
class Wanted:
    arm: str
    task: str
    seed: int


@dataclass
class _Tally:
    first_parameters: int | None = None
    last_epoch: pb.EpochCompleted | None = None
    completed: pb.RunCompleted | None = None
    culls: int = 0
    rollbacks: int = 0
    germinated: list[str] = field(default_factory=list)
    rejected: int = 0
    nonfinite: int = 0
    decisions: int = 0
    fallbacks: int = 0


def _nonfinite(decision: pb.DecisionMade) -> int:
    values = [decision.action_probability, *decision.inputs_summary.values()]
    return sum(1 for v in values if not math.isfinite(v))


def held_out_runs(
    events: Iterable[pb.EventEnvelope], wanted: Mapping[str, Wanted], config: RewardConfig
) -> list[HeldOutRun]:
    """One HeldOutRun per wanted run id (in the order of `wanted`); an absent run is not completed."""
    tallies = {run_id: _Tally() for run_id in wanted}
    allowed: dict[str, bool] = {}
    for envelope in events:
        payload = decode_payload(envelope)
        if isinstance(payload, pb.BlueprintRegistered):
            allowed[payload.descriptor.blueprint_id] = graftable(payload.descriptor)
            continue
        tally = tallies.get(envelope.run_id)
        if tally is None:
            continue
        if isinstance(payload, pb.EpochCompleted):
            if tally.first_parameters is None:
                tally.first_parameters = int(payload.parameters)
            tally.last_epoch = payload
        elif isinstance(payload, pb.RunCompleted):
            tally.completed = payload
        elif isinstance(payload, pb.SeedTransitioned) and payload.to_stage == pb.SEED_STAGE_CULLED:
            tally.culls += 1
        elif isinstance(payload, pb.RollbackCompleted):
            tally.rollbacks += 1
        elif isinstance(payload, pb.CommandRejected) and payload.code == ILLEGAL_TRANSITION:
            tally.rejected += 1
        elif isinstance(payload, pb.DecisionMade):
            tally.nonfinite += _nonfinite(payload)
            tally.decisions += 1
            tally.fallbacks += payload.reason.startswith(FALLBACK_REASON)
            if payload.factored_action.operation == "germinate":
                tally.germinated.append(payload.factored_action.blueprint_id)
    return [_run(wanted[run_id], tallies[run_id], allowed, config) for run_id in wanted]


def _run(want: Wanted, tally: _Tally, allowed: Mapping[str, bool], config: RewardConfig) -> HeldOutRun:
    forbidden = sum(1 for b in tally.germinated if not allowed.get(b, False))
    last, done = tally.last_epoch, tally.completed
    if done is None or last is None or tally.first_parameters is None:
        return HeldOutRun(
            want.arm,
            want.task,
            want.seed,
            False,
            math.nan,
            math.nan,
            math.nan,
            0,
            forbidden,
            tally.rejected,
            tally.nonfinite,
            tally.decisions,
            tally.fallbacks,
        )
    outcome = EpisodeOutcome(last.state.validation_accuracy, tally.first_parameters, int(last.parameters))
    return HeldOutRun(
        arm=want.arm,
        task=want.task,
        seed=want.seed,
        completed=True,
        reward=run_return(outcome, tally.culls, tally.rollbacks, config),
        validation_accuracy=last.state.validation_accuracy,
        test_accuracy=done.test_accuracy,
        parameters=int(done.parameters),
        forbidden_blueprints=forbidden,
        lifecycle_violations=tally.rejected,
        nonfinite=tally.nonfinite,
        decisions=tally.decisions,
        fallbacks=tally.fallbacks,
    )
