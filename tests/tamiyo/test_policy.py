"""The heuristic policy, pure: plateau, slot and blueprint choice, budget, embargo, gates, rollback."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from domains.kasmina.unfinished import epochs_from_germination, too_late_reason
from domains.tamiyo.config import HeuristicConfig
from domains.tamiyo.observation import Observation, plateaued
from domains.tamiyo.policy import HeuristicPolicy
from domains.tamiyo.risk import RiskThresholds
from domains.tamiyo.state import TamiyoState, evolve
from leyline import pb
from leyline.lifecycle import LifecycleConfig
from leyline.seed_metrics import STAGE_EPOCHS_METRIC as STAGE_EPOCHS
from tests.tamiyo.scripted import (
    CATALOGUE,
    LIFECYCLE,
    PLATEAU_LOSSES,
    PLATEAU_SCHEDULE,
    descriptor,
    dormant_slots,
    observation,
)


def fold(state: TamiyoState, payloads: Sequence[Message]) -> TamiyoState:
    for payload in payloads:
        state = evolve(state, payload)
    return state


def decision_of(payloads: Sequence[Message]) -> pb.DecisionMade:
    first = payloads[0]
    assert isinstance(first, pb.DecisionMade)
    return first


def command_of(payloads: Sequence[Message]) -> pb.AdaptationCommand | None:
    commands = [p.command for p in payloads if isinstance(p, pb.AdaptationCommandIssued)]
    assert len(commands) <= 1
    return commands[0] if commands else None


def run(
    policy: HeuristicPolicy, observations: Sequence[Observation], state: TamiyoState | None = None
) -> tuple[TamiyoState, list[list[Message]]]:
    state = state or TamiyoState()
    history = []
    for obs in observations:
        payloads = policy.decide(state, obs)
        state = fold(state, payloads)
        history.append(payloads)
    return state, history


def plateau_run(**overrides: object) -> list[Observation]:
    return [observation(epoch, loss, **overrides) for epoch, loss in enumerate(PLATEAU_LOSSES)]  # type: ignore[arg-type]


def first_command(history: list[list[Message]]) -> tuple[int, pb.AdaptationCommand]:
    for epoch, payloads in enumerate(history):
        command = command_of(payloads)
        if command is not None:
            return epoch, command
    raise AssertionError("no command was issued")


@pytest.mark.parametrize(
    ("losses", "expected"),
    [
        ((1.0, 0.8, 0.6, 0.5), False),  # improving
        ((0.5, 0.5, 0.5, 0.5), True),
        ((0.5, 0.499, 0.498, 0.497), True),  # 0.6 % < 1 %
        ((0.5, 0.49, 0.48, 0.47), False),  # 6 % improvement
        ((0.5, 0.5, 0.5), False),  # not enough history
        ((0.5, float("nan"), 0.5, 0.5), False),
    ],
)
def test_plateau(losses: tuple[float, ...], expected: bool) -> None:
    assert plateaued(losses, window=3, epsilon=0.01) is expected


@pytest.mark.parametrize(
    ("losses", "expected"),
    [
        ((0.70, 0.65, 0.61, 0.62, 0.60), True),  # noisy creep: 1.6 % better than the best before
        ((0.90, 0.78, 0.70, 0.62), False),  # 11 % better than the best two epochs ago
        ((0.70, 0.61, 0.66, 0.64), True),  # worse than a lucky dip
        ((0.70, 0.61), False),  # not enough history
    ],
)
def test_plateau_over_two_epochs_within_digits_noise(losses: tuple[float, ...], expected: bool) -> None:
    assert plateaued(losses, window=2, epsilon=0.1) is expected


def test_the_default_grows_while_the_host_still_learns() -> None:
    """plateau_window 1, plateau_epsilon 0.5: germinate at the first epoch whose best validation loss
    improved by less than half (1.0 → 0.7), then one seed per slot as the cooldown allows."""
    _, history = run(HeuristicPolicy(), plateau_run(seeds=dormant_slots(3)))
    epoch, command = first_command(history)
    assert epoch == 1 and command.seed_operation.operation == pb.SEED_OP_GERMINATE
    assert decision_of(history[0]).reason == "validation loss still improving"
    assert decision_of(history[1]).reason.startswith("validation loss plateaued over 1 epochs")


def test_germinates_on_plateau_at_the_slot_with_most_headroom() -> None:
    policy = HeuristicPolicy(HeuristicConfig(**PLATEAU_SCHEDULE))
    seeds = dormant_slots(3, headroom=(0.1, 0.9, 0.5))
    _, history = run(policy, plateau_run(seeds=seeds))
    epoch, command = first_command(history)
    assert epoch == 6  # the first epoch where the last 3 epochs did not improve on the best before by 1 %
    for payloads in history[:epoch]:
        assert decision_of(payloads).action == "noop"
        assert decision_of(payloads).reason == "validation loss still improving"
    assert command.seed_operation.operation == pb.SEED_OP_GERMINATE
    assert command.target_slot == 1
    # the largest safe, approved, non-quarantined blueprint within the green risk cap 0.5
    assert command.seed_operation.blueprint_id == "BP023"
    assert command.seed_operation.alpha_ramp_epochs == 3
    assert command.seed_operation.parameters["hidden"] == 8
    assert command.policy_version == "heuristic-1.0"
    decision = decision_of(history[epoch])
    assert decision.action == "germinate" and decision.command_id == command.command_id
    assert decision.policy_name == "heuristic" and decision.policy_version == "1.0"
    assert decision.inputs_summary["validation_loss"] == pytest.approx(PLATEAU_LOSSES[epoch])
    headroom = {k: v for k, v in decision.inputs_summary.items() if k.startswith("headroom_")}
    assert headroom == pytest.approx({"headroom_slot0": 0.1, "headroom_slot1": 0.9, "headroom_slot2": 0.5})
    assert pb.RiskLevel.Name(decision.risk_level) == "RISK_LEVEL_GREEN"


def test_parameter_budget_limits_the_blueprint() -> None:
    budget = HeuristicPolicy(HeuristicConfig(parameter_budget=700 + 500))
    _, history = run(budget, plateau_run())
    _, command = first_command(history)
    assert command.seed_operation.blueprint_id == "BP016"
    too_tight = HeuristicPolicy(HeuristicConfig(parameter_budget=700 + 100))
    _, history = run(too_tight, plateau_run())
    _, command = first_command(history)
    assert command.seed_operation.blueprint_id == "BP001"  # the only one within 100 parameters
    nothing = HeuristicPolicy(HeuristicConfig(parameter_budget=600))
    _, history = run(nothing, plateau_run())
    assert all(command_of(p) is None for p in history)
    assert (
        decision_of(history[-1]).reason == "plateau, but no blueprint fits the risk cap and parameter budget"
    )


def test_unapproved_quarantined_and_adversarial_blueprints_are_never_chosen() -> None:
    dangerous = (
        descriptor("BP036", 0.1, tier=pb.BLUEPRINT_TIER_EXPERIMENTAL, requires_approval=True),
        descriptor("BP045", 0.0, tier=pb.BLUEPRINT_TIER_ADVERSARIAL, quarantine=True),
        descriptor("BP040", 0.1, requires_approval=True, approved=False),
    )
    policy = HeuristicPolicy()
    _, history = run(policy, plateau_run(catalogue=dangerous))
    assert all(command_of(p) is None for p in history)
    approved = (*dangerous, descriptor("BP041", 0.1, requires_approval=True, approved=True))
    _, history = run(policy, plateau_run(catalogue=approved))
    _, command = first_command(history)
    assert command.seed_operation.blueprint_id == "BP041"


def test_catalogue_metadata_steers_choice_when_enabled() -> None:
    steered = HeuristicPolicy(HeuristicConfig(risk_aversion=1.0))
    _, history = run(steered, plateau_run())
    assert first_command(history)[1].seed_operation.blueprint_id == "BP009"
    unsteered = HeuristicPolicy(HeuristicConfig(risk_aversion=1.0, use_catalogue_metadata=False))
    _, history = run(unsteered, plateau_run())
    assert first_command(history)[1].seed_operation.blueprint_id == "BP023"


def test_conservative_mode_uses_the_conservative_pool_and_a_slower_ramp() -> None:
    policy = HeuristicPolicy(HeuristicConfig(use_catalogue_metadata=False))
    orange = 18.0 * 2  # the hook at twice its budget: level 2 keeps the mode (exit needs level <= 1)
    state, history = run(policy, plateau_run(hook_ms=orange), TamiyoState(conservative=True))
    assert state.conservative
    _, command = first_command(history)
    assert command.seed_operation.blueprint_id == "BP009"
    assert command.seed_operation.alpha_ramp_epochs == 6


def test_respects_the_maximum_number_of_concurrent_seeds() -> None:
    training = pb.SeedState(slot=0, seed_id=1, stage=pb.SEED_STAGE_TRAINING, blueprint_id="BP009")
    seeds = [training, pb.SeedState(slot=1, stage=pb.SEED_STAGE_DORMANT)]
    policy = HeuristicPolicy(HeuristicConfig(max_concurrent_seeds=1))
    _, history = run(policy, plateau_run(seeds=seeds))
    assert all(command_of(p) is None for p in history)
    assert decision_of(history[-1]).reason == "plateau, but 1 seed(s) active (max 1)"
    two = HeuristicPolicy(HeuristicConfig(max_concurrent_seeds=2))
    _, history = run(two, plateau_run(seeds=seeds))
    _, command = first_command(history)
    assert command.target_slot == 1 and command.target_seed_id == 2


def test_embargo_after_a_cull_and_only_dormant_slots() -> None:
    policy = HeuristicPolicy()
    flat = [observation(epoch, 0.5, seeds=dormant_slots(0)) for epoch in range(4)]
    stuck = pb.SeedState(slot=0, seed_id=1, stage=pb.SEED_STAGE_TRAINING, age_epochs=9)
    state, history = run(policy, [*flat, observation(4, 0.5, seeds=[stuck])])
    command = command_of(history[4])
    assert command is not None and command.seed_operation.operation == pb.SEED_OP_CULL
    assert decision_of(history[4]).reason == "slot 0: still training after 9 epochs"
    assert state.cull_epoch(0) == 4
    # the slot is dormant again; Tamiyo's own embargo still holds for 3 epochs after its cull
    later = [observation(epoch, 0.5, seeds=dormant_slots(1)) for epoch in range(5, 8)]
    _, history = run(policy, later, state)
    reasons = [decision_of(p).reason for p in history]
    assert reasons[:2] == ["plateau, but no dormant slot outside embargo"] * 2
    assert decision_of(history[2]).action == "germinate"  # epoch 7: 3 epochs after the cull
    embargoed = [pb.SeedState(slot=0, stage=pb.SEED_STAGE_EMBARGOED)]
    _, history = run(policy, [observation(e, 0.5, seeds=embargoed) for e in range(6)])
    assert all(command_of(p) is None for p in history)
    assert decision_of(history[-1]).reason == "plateau, but no dormant slot outside embargo"


def test_non_finite_seed_is_culled_before_any_rollback() -> None:
    policy = HeuristicPolicy()
    calm = [observation(e, 1.0 - 0.1 * e) for e in range(3)]
    bad = pb.SeedState(slot=0, seed_id=1, stage=pb.SEED_STAGE_TRAINING, gradient_norm=float("nan"))
    _, history = run(policy, [*calm, observation(3, 0.7, seeds=[bad])])
    command = command_of(history[3])
    assert command is not None and command.seed_operation.operation == pb.SEED_OP_CULL
    assert decision_of(history[3]).reason == "slot 0: non-finite seed measurements"
    assert pb.RiskLevel.Name(decision_of(history[3]).risk_level) == "RISK_LEVEL_CRITICAL"


def test_advances_seeds_on_gate_evidence_and_culls_on_bad_evidence() -> None:
    policy = HeuristicPolicy(HeuristicConfig(advance_seeds=True))

    def decide(seed: pb.SeedState, conservative: bool = False) -> pb.AdaptationCommand | None:
        return command_of(
            policy.decide(TamiyoState(conservative=conservative), observation(5, 0.5, seeds=[seed]))
        )

    young = pb.SeedState(slot=0, seed_id=3, stage=pb.SEED_STAGE_TRAINING, age_epochs=1, blueprint_id="BP009")
    assert decide(young) is None
    ready = pb.SeedState(slot=0, seed_id=3, stage=pb.SEED_STAGE_TRAINING, age_epochs=2, blueprint_id="BP009")
    advance = decide(ready)
    assert advance is not None and advance.seed_operation.operation == pb.SEED_OP_ADVANCE
    assert advance.target_seed_id == 3 and advance.seed_operation.blueprint_id == "BP009"
    assert decide(ready, conservative=True) is None  # conservative mode does not start blending
    ramping = pb.SeedState(slot=0, seed_id=3, stage=pb.SEED_STAGE_BLENDING, age_epochs=3, alpha=0.6)
    assert decide(ramping) is None
    probation = pb.SeedState(
        slot=0, seed_id=3, stage=pb.SEED_STAGE_PROBATIONARY, age_epochs=2, metrics={"contribution": 0.01}
    )
    assert decide(probation).seed_operation.operation == pb.SEED_OP_ADVANCE  # type: ignore[union-attr]
    useless = pb.SeedState(
        slot=0, seed_id=3, stage=pb.SEED_STAGE_PROBATIONARY, age_epochs=2, metrics={"contribution": -0.02}
    )
    # within G4's extension the per-example evidence decides, not Tamiyo's point estimate
    assert LifecycleConfig().probation_extension_epochs == 2
    assert decide(useless).seed_operation.operation != pb.SEED_OP_CULL  # type: ignore[union-attr]
    useless.age_epochs = 4
    assert decide(useless).seed_operation.operation == pb.SEED_OP_CULL  # type: ignore[union-attr]
    stuck = pb.SeedState(slot=0, seed_id=3, stage=pb.SEED_STAGE_TRAINING, age_epochs=9)
    assert decide(stuck).seed_operation.operation == pb.SEED_OP_CULL  # type: ignore[union-attr]
    violating = pb.SeedState(
        slot=0, seed_id=3, stage=pb.SEED_STAGE_TRAINING, age_epochs=1, metrics={"isolation_violations": 2}
    )
    assert decide(violating).seed_operation.operation == pb.SEED_OP_CULL  # type: ignore[union-attr]
    # Kasmina's stage clock wins over the age since germination
    settled = pb.SeedState(
        slot=0, seed_id=3, stage=pb.SEED_STAGE_TRAINING, age_epochs=9, metrics={"stage_epochs": 1}
    )
    assert decide(settled) is None
    assert command_of(HeuristicPolicy().decide(TamiyoState(), observation(5, 0.5, seeds=[ready]))) is None


def test_the_lifecycle_limits_come_from_the_observation_not_the_policy_config() -> None:
    policy = HeuristicPolicy(HeuristicConfig(advance_seeds=True))

    def operation(seed: pb.SeedState, lifecycle: LifecycleConfig) -> int | None:
        obs = observation(5, 0.5, seeds=[seed], lifecycle=lifecycle)
        command = command_of(policy.decide(TamiyoState(), obs))
        return None if command is None else command.seed_operation.operation

    def training(age: int, **metrics: float) -> pb.SeedState:
        return pb.SeedState(slot=0, seed_id=3, stage=pb.SEED_STAGE_TRAINING, age_epochs=age, metrics=metrics)

    strict = LifecycleConfig(min_training_epochs=3, max_training_epochs=4, max_isolation_violations=2)
    lenient = LifecycleConfig(min_training_epochs=1, max_training_epochs=10, max_isolation_violations=5)
    assert operation(training(2), strict) is None  # 2 of 3 training epochs: not ready to advance
    assert operation(training(2), lenient) == pb.SEED_OP_ADVANCE
    assert operation(training(5), strict) == pb.SEED_OP_CULL
    assert operation(training(5), lenient) == pb.SEED_OP_ADVANCE
    # Tamiyo culls one violation before Kasmina's automatic cull, never at zero
    assert operation(training(0, isolation_violations=1), strict) == pb.SEED_OP_CULL
    assert operation(training(0, isolation_violations=3), lenient) is None
    assert operation(training(0, isolation_violations=4), lenient) == pb.SEED_OP_CULL
    noisy = pb.SeedState(slot=0, seed_id=3, stage=pb.SEED_STAGE_TRAINING, gradient_norm=50.0)
    assert operation(noisy, LifecycleConfig()) is None
    assert operation(noisy, LifecycleConfig(max_grad_norm=10.0)) == pb.SEED_OP_CULL


def test_the_ramp_and_embargo_come_from_the_lifecycle() -> None:
    policy = HeuristicPolicy(HeuristicConfig(use_catalogue_metadata=False))
    slow = LifecycleConfig(alpha_ramp_epochs=5, embargo_epochs=1)
    _, history = run(policy, plateau_run(lifecycle=slow))
    assert first_command(history)[1].seed_operation.alpha_ramp_epochs == 5
    # mitigation never ramps faster than the lifecycle's own ramp
    orange = 18.0 * 2
    _, history = run(policy, plateau_run(hook_ms=orange, lifecycle=LifecycleConfig(alpha_ramp_epochs=9)))
    assert first_command(history)[1].seed_operation.alpha_ramp_epochs == 9
    stuck = pb.SeedState(slot=0, seed_id=1, stage=pb.SEED_STAGE_TRAINING, age_epochs=9)
    flat = [observation(epoch, 0.5, seeds=dormant_slots(0), lifecycle=slow) for epoch in range(4)]
    state, _ = run(policy, [*flat, observation(4, 0.5, seeds=[stuck], lifecycle=slow)])
    _, history = run(policy, [observation(5, 0.5, seeds=dormant_slots(1), lifecycle=slow)], state)
    assert decision_of(history[0]).action == "germinate"  # a 1-epoch embargo has elapsed


def test_no_germination_when_the_run_ends_before_the_seed_could_reach_its_verdict() -> None:
    policy = HeuristicPolicy(HeuristicConfig(use_catalogue_metadata=False))
    epoch, command = first_command(run(policy, plateau_run())[1])  # a run without an end germinates here
    needed = epochs_from_germination(LIFECYCLE, command.seed_operation.alpha_ramp_epochs)
    _, history = run(policy, plateau_run(run_epochs=epoch + needed - 1))  # one epoch too short
    assert all(command_of(p) is None for p in history)
    assert decision_of(history[epoch]).reason.startswith("no germination: a seed germinated at epoch")
    assert f"the run ends at epoch {epoch + needed - 1}" in decision_of(history[epoch]).reason
    _, history = run(policy, plateau_run(run_epochs=epoch + needed))  # just long enough
    assert first_command(history)[0] == epoch


def test_the_run_end_is_judged_at_the_ramp_the_risk_level_asks_for() -> None:
    """At a raised risk the ramp is `mitigated_alpha_ramp_epochs`: a run that leaves room for the
    lifecycle's ramp but not for that one gets no germination, and every germination issued, at any run
    length, is one Kasmina's rule accepts."""
    policy = HeuristicPolicy(HeuristicConfig(use_catalogue_metadata=False))
    orange = 18.0 * 2  # the hook at twice its budget: mitigated
    epoch, command = first_command(run(policy, plateau_run(hook_ms=orange))[1])
    ramp = command.seed_operation.alpha_ramp_epochs
    assert ramp > LIFECYCLE.alpha_ramp_epochs
    short = epoch + epochs_from_germination(LIFECYCLE, ramp) - 1
    assert too_late_reason(epoch, short, LIFECYCLE, 0) is None  # room for the lifecycle's own ramp
    _, history = run(policy, plateau_run(hook_ms=orange, run_epochs=short))
    assert all(command_of(p) is None for p in history)
    for hook_ms in (2.0, orange):
        for last in range(len(PLATEAU_LOSSES) + 20):
            _, history = run(policy, plateau_run(hook_ms=hook_ms, run_epochs=last))
            for at, payloads in enumerate(history):
                issued = command_of(payloads)
                if issued is not None and issued.seed_operation.operation == pb.SEED_OP_GERMINATE:
                    assert (
                        too_late_reason(at, last, LIFECYCLE, issued.seed_operation.alpha_ramp_epochs) is None
                    )


def test_loss_explosion_requests_one_rollback_to_the_last_safe_epoch() -> None:
    policy = HeuristicPolicy()
    calm = [observation(e, 1.0 - 0.1 * e) for e in range(4)]
    exploded = [observation(e, 0.6, training_loss=0.7 * 20) for e in range(4, 7)]
    _, history = run(policy, calm + exploded)
    rollback = command_of(history[4])
    assert rollback is not None and rollback.command_type == pb.COMMAND_TYPE_ROLLBACK
    assert rollback.rollback.target_epoch == 3
    assert rollback.rollback.mode == pb.ROLLBACK_MODE_FAST
    assert pb.RiskLevel.Name(decision_of(history[4]).risk_level) == "RISK_LEVEL_CRITICAL"
    assert command_of(history[5]) is None  # no second rollback to the same target
    assert decision_of(history[5]).reason == "loss critical, but no safe epoch left to roll back to: blocked"


@pytest.mark.parametrize("stage", [pb.SEED_STAGE_CULLED, pb.SEED_STAGE_EMBARGOED])
def test_a_loss_jump_caused_by_a_seed_culled_at_the_last_boundary_is_not_critical(stage: int) -> None:
    """The loss a cull changes is measured first one epoch after it: no rollback then, and the references
    start again from there (a jump of the same size later, with no cull behind it, is critical)."""
    policy = HeuristicPolicy()
    calm = [observation(e, 1.0 - 0.1 * e, training_loss=0.5 - 0.1 * e) for e in range(4)]
    culled = [*dormant_slots(2), pb.SeedState(slot=2, seed_id=1, stage=stage, metrics={STAGE_EPOCHS: 1.0})]
    jump = observation(4, 2.0, training_loss=0.2 * 20, seeds=culled)
    after = [observation(e, 1.9, training_loss=3.9, seeds=dormant_slots(3)) for e in (5, 6)]
    state, history = run(policy, [*calm, jump, *after])
    commands = [c for c in map(command_of, history) if c is not None]  # germinations may happen
    assert [c for c in commands if c.command_type == pb.COMMAND_TYPE_ROLLBACK] == []
    assert [decision_of(p).inputs_summary["level_loss_explosion"] for p in history[4:]] == [0.0] * 3
    assert [decision_of(p).inputs_summary["level_loss_drift"] for p in history[4:]] == [0.0] * 3
    assert state.best_training_loss == pytest.approx(3.9)
    _, again = run(policy, [observation(7, 1.9 * 3, training_loss=3.9 * 20)], state)
    rollback = command_of(again[0])
    assert rollback is not None and rollback.command_type == pb.COMMAND_TYPE_ROLLBACK


def test_red_risk_blocks_germination_but_not_culling() -> None:
    policy = HeuristicPolicy()
    slow = plateau_run(hook_ms=18.0 * 5)  # hook 5× over budget: level 3
    _, history = run(policy, slow)
    assert all(command_of(p) is None for p in history)
    assert decision_of(history[-1]).reason == "risk level 3: germination and advancement blocked"
    bad = pb.SeedState(slot=0, seed_id=1, stage=pb.SEED_STAGE_BLENDING, gradient_norm=5e3)
    _, history = run(policy, [observation(0, 1.0, seeds=[bad], hook_ms=18.0 * 5)])
    assert command_of(history[0]).seed_operation.operation == pb.SEED_OP_CULL  # type: ignore[union-attr]


def strip_ids(payloads: Sequence[Message]) -> list[bytes]:
    return [p.SerializeToString(deterministic=True) for p in payloads]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(min_value=0.05, max_value=3.0), min_size=4, max_size=14),
    st.integers(min_value=0, max_value=2**32),
)
def test_deterministic_for_a_given_seed(losses: list[float], seed: int) -> None:
    tied = (descriptor("BP002", 0.1), descriptor("BP003", 0.1), descriptor("BP004", 0.1))
    observations = [
        observation(e, loss, catalogue=tied, seeds=dormant_slots(3)) for e, loss in enumerate(losses)
    ]
    first = run(HeuristicPolicy(HeuristicConfig(seed=seed)), observations)[1]
    second = run(HeuristicPolicy(HeuristicConfig(seed=seed)), observations)[1]
    assert [strip_ids(p) for p in first] == [strip_ids(p) for p in second]


def test_ties_break_by_seed() -> None:
    tied = (descriptor("BP002", 0.1), descriptor("BP003", 0.1), descriptor("BP004", 0.1))
    chosen = set()
    for seed in range(12):
        observations = [
            observation(e, loss, catalogue=tied, seeds=dormant_slots(3))
            for e, loss in enumerate(PLATEAU_LOSSES)
        ]
        _, command = first_command(run(HeuristicPolicy(HeuristicConfig(seed=seed)), observations)[1])
        chosen.add((command.seed_operation.blueprint_id, command.target_slot))
    assert len(chosen) > 1


def test_catalogue_from_spec_tiers_all_considered() -> None:
    policy = HeuristicPolicy()
    eligible = policy.eligible_blueprints(observation(0, 1.0), slot=0, level=0, conservative=False)
    assert [d.blueprint_id for d in eligible] == ["BP001", "BP009", "BP016", "BP023"]
    assert [d.blueprint_id for d in policy.eligible_blueprints(observation(0, 1.0), 0, 0, True)] == [
        "BP001",
        "BP009",
    ]
    assert {d.blueprint_id for d in CATALOGUE} >= {"BP036", "BP045"}


HOOK_FOR_LEVEL = {0: 2.0, 1: 18.0 * 1.5, 2: 18.0 * 3, 3: 18.0 * 10, 4: 18.0 * 30}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=25))
def test_conservative_mode_follows_its_hysteresis(raw_levels: list[int]) -> None:
    """Reference model: enter as soon as the effective level (max of the last 3 raw levels) reaches 3;
    leave after 3 consecutive windows at raw level <= 1 since the mode was entered."""
    policy = HeuristicPolicy()
    state = TamiyoState()
    conservative, calm = False, 0
    for epoch, raw in enumerate(raw_levels):
        payloads = policy.decide(state, observation(epoch, 1.0, hook_ms=HOOK_FOR_LEVEL[raw]))
        state = fold(state, payloads)
        effective = max(raw_levels[max(0, epoch - 2) : epoch + 1])
        changes = [p.active for p in payloads if isinstance(p, pb.ConservativeModeChanged)]
        if not conservative and effective >= 3:
            conservative, calm = True, 0
            assert changes == [True]
        elif conservative:
            calm = calm + 1 if raw <= 1 else 0
            if calm >= 3:
                conservative = False
                assert changes == [False]
            else:
                assert changes == []
        else:
            assert changes == []
        assert decision_of(payloads).inputs_summary["risk_raw"] == raw
        assert decision_of(payloads).risk_level - 1 == effective
        assert state.conservative is conservative


def test_a_window_cut_short_by_a_rollback_reports_aborted() -> None:
    policy = HeuristicPolicy(HeuristicConfig(**PLATEAU_SCHEDULE))
    state, history = run(policy, plateau_run()[:7])
    _, command = first_command(history)
    state = fold(state, policy.decide(state, observation(7, 0.4, applied=[command.command_id])))
    assert [w.command_id for w in state.windows] == [command.command_id]
    rolled_back = policy.decide(state, observation(5, 0.45))  # the run went back to epoch 5
    (report,) = [p.report for p in rolled_back if isinstance(p, pb.FieldReportIssued)]
    assert report.outcome == pb.FIELD_REPORT_OUTCOME_ABORTED
    assert (report.start_epoch, report.end_epoch) == (6, 5)


def test_the_config_round_trips_through_the_json_a_run_records() -> None:
    config = HeuristicConfig(
        seed=7,
        plateau_window=2,
        parameter_budget=1860,
        thresholds=RiskThresholds(loss_drift=(0.2, 0.4, 1.0, 3.0)),
    )
    assert HeuristicConfig.from_json(config.to_json()) == config
    assert HeuristicConfig.from_json(HeuristicConfig().to_json()) == HeuristicConfig()
