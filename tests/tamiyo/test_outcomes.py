"""Blueprint choice learns from the run's outcomes per (slot, blueprint) and explores (outcomes.py,
choice.py): a culled blueprint is not re-picked at its slot while anything else is eligible."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from domains.tamiyo.config import HeuristicConfig
from domains.tamiyo.outcomes import Outcome, outcome_of, score
from domains.tamiyo.policy import HeuristicPolicy
from domains.tamiyo.state import TamiyoState, TrackedCommand, evolve, from_dict, to_dict
from leyline import pb
from tests.tamiyo.scripted import dormant_slots, observation

PLATEAU = TamiyoState(validation_losses=(0.4, 0.4, 0.4, 0.4))
ELIGIBLE = ("BP001", "BP009", "BP016", "BP023")  # the scripted catalogue's graftable blueprints


def chosen(outcomes: tuple[Outcome, ...], seed: int = 0, slots: int = 1) -> tuple[str, str]:
    """The blueprint and reason of a germination at a plateau with these outcomes behind it."""
    policy = HeuristicPolicy(HeuristicConfig(seed=seed))
    state = TamiyoState(validation_losses=PLATEAU.validation_losses, outcomes=outcomes)
    payloads = policy.decide(state, observation(20, 0.4, seeds=dormant_slots(slots)))
    (issued,) = [p for p in payloads if isinstance(p, pb.AdaptationCommandIssued)]
    return issued.command.seed_operation.blueprint_id, payloads[0].reason  # type: ignore[attr-defined]


def report(stage: int, contribution: float | None = None, start: int = 5, end: int = 12) -> pb.FieldReport:
    metrics = {} if contribution is None else {"contribution": contribution}
    return pb.FieldReport(
        command_id="c1",
        slot=1,
        blueprint_id="BP009",
        seed_stage=stage,  # type: ignore[arg-type]
        start_epoch=start,
        end_epoch=end,
        metrics=metrics,
    )


def test_a_germination_report_becomes_an_outcome() -> None:
    assert outcome_of(report(pb.SEED_STAGE_FOSSILIZED)) == Outcome(1, "BP009", 1.0, False)
    assert outcome_of(report(pb.SEED_STAGE_EMBARGOED, 0.5)) == Outcome(1, "BP009", 0.0, True)
    assert outcome_of(report(pb.SEED_STAGE_DORMANT)) == Outcome(1, "BP009", 0.0, True)  # culled, reset
    good, bad = (
        outcome_of(report(pb.SEED_STAGE_TRAINING, 0.01)),
        outcome_of(report(pb.SEED_STAGE_TRAINING, -0.01)),
    )
    assert good is not None and bad is not None and bad.reward < 0.5 < good.reward < 1.0
    assert outcome_of(report(pb.SEED_STAGE_TERMINATED)) == Outcome(1, "BP009", 0.5, False)
    assert outcome_of(report(pb.SEED_STAGE_CULLED, start=12, end=5)) is None  # cut short by a rollback
    assert outcome_of(report(pb.SEED_STAGE_UNKNOWN)) is None  # not a germination's report

    state = evolve(TamiyoState(), pb.FieldReportIssued(report=report(pb.SEED_STAGE_CULLED)))
    assert state.outcomes == (Outcome(1, "BP009", 0.0, True),)
    assert from_dict(json.loads(json.dumps(to_dict(state)))) == state  # checkpoints keep them


def test_the_first_choice_is_the_priors_and_a_culled_blueprint_is_not_repicked_at_its_slot() -> None:
    first, reason = chosen(())
    assert first == "BP023" and "outcome score" not in reason
    second, reason = chosen((Outcome(0, first, 0.0, True),))
    assert second != first and "outcome score" in reason
    # at another slot the cull counts against it, but does not exclude it
    assert score(0.8, 1, first, (Outcome(0, first, 0.0, True),), 2.0, 0.5).mean < 0.8


def test_repeated_culls_walk_through_every_eligible_blueprint_before_any_repeat() -> None:
    outcomes: tuple[Outcome, ...] = ()
    picks = []
    for _ in range(len(ELIGIBLE) + 1):
        blueprint, _ = chosen(outcomes)
        picks.append(blueprint)
        outcomes = (*outcomes, Outcome(0, blueprint, 0.0, True))
    assert sorted(picks[: len(ELIGIBLE)]) == sorted(ELIGIBLE)
    assert picks[-1] in ELIGIBLE  # everything culled: still a graft rather than none


@given(st.sets(st.sampled_from(ELIGIBLE), max_size=len(ELIGIBLE) - 1), st.integers(0, 2**16))
def test_never_a_blueprint_culled_at_the_slot_while_another_is_eligible(culled: set[str], seed: int) -> None:
    outcomes = tuple(Outcome(0, blueprint_id, 0.0, True) for blueprint_id in sorted(culled))
    assert chosen(outcomes, seed)[0] not in culled


def test_a_fossilized_blueprint_scores_above_a_culled_one_with_the_same_prior() -> None:
    kept = score(0.7, 0, "BP016", (Outcome(0, "BP016", 1.0, False),), 2.0, 0.5)
    lost = score(0.7, 0, "BP016", (Outcome(0, "BP016", 0.0, True),), 2.0, 0.5)
    untried = score(0.7, 0, "BP016", (Outcome(1, "BP009", 1.0, False),), 2.0, 0.5)
    assert kept.value > untried.mean and lost.value < kept.value and untried.bonus > kept.bonus


def test_a_cull_seen_at_a_boundary_steers_the_choice_made_at_that_boundary() -> None:
    window = TrackedCommand("cg", 10, "germinate", 0, 1, "BP023", 0, "heuristic-1.0", 0.9, 0.4, 700)
    state = TamiyoState(validation_losses=PLATEAU.validation_losses, windows=(window,))
    culled = pb.SeedState(slot=0, seed_id=1, stage=pb.SEED_STAGE_EMBARGOED, blueprint_id="BP023")
    seeds = [culled, pb.SeedState(slot=1, stage=pb.SEED_STAGE_DORMANT)]
    payloads = HeuristicPolicy().decide(state, observation(20, 0.4, seeds=seeds))
    (issued,) = [p for p in payloads if isinstance(p, pb.AdaptationCommandIssued)]
    assert issued.command.target_slot == 1 and issued.command.seed_operation.blueprint_id != "BP023"
    assert any(isinstance(p, pb.FieldReportIssued) for p in payloads)  # the report that taught it
