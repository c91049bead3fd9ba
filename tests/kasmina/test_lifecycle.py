"""The pure lifecycle: a hypothesis state machine over random commands and gate outcomes, and unit tests."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from google.protobuf.message import Message
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from domains.kasmina import lifecycle as lc
from domains.kasmina.commands import (
    Advance,
    Command,
    Cull,
    Germinate,
    RecordViolation,
    Reject,
    Scrubbed,
    Terminate,
    Tick,
)
from domains.kasmina.gates import Gate, Measurements, Outcome, alpha_at, gate_g0
from domains.kasmina.state import KasminaState, SlotState
from leyline import pb
from leyline.lifecycle import (
    ACTIVE_STAGES,
    BLENDING,
    CULLED,
    DORMANT,
    EMBARGOED,
    FOSSILIZED,
    GERMINATED,
    RESETTING,
    TERMINATED,
    TRAINING,
    TRANSITIONS,
    LifecycleConfig,
    stage_name,
)

CONFIG = LifecycleConfig(
    min_training_epochs=1, max_training_epochs=3, alpha_ramp_epochs=2, probation_epochs=1, embargo_epochs=2
)
SLOTS = (0, 1, 2)
COMMAND_IDS = [f"c{i}" for i in range(8)]

losses = st.sampled_from([0.1, 0.5, 1.0, 2.0, 5.0, math.nan, math.inf])
measurements = st.builds(
    Measurements,
    host_loss=losses,
    seed_loss=losses,
    loss_alpha0=losses,
    loss_alpha1=losses,
    grad_norm=st.sampled_from([0.0, 1.0, 10.0, 1e4, math.nan]),
    nonfinite=st.sampled_from([0, 0, 0, 1]),
    shape_ok=st.booleans(),
    blend_deltas=st.sampled_from([(), (0.0, 0.01, -0.01), (1.0, 1.2, 0.9), (math.nan, 0.0)]),
    best_gap=st.sampled_from([math.nan, -0.5, 0.0, 1.0]),
)
g0_gates = st.builds(gate_g0, artifact_verified=st.booleans(), shape_ok=st.booleans())


@st.composite
def lifecycle_configs(draw: st.DrawFn) -> LifecycleConfig:
    """Limits a run may record: each machine run decides under one of them (CONFIG among them)."""
    minimum = draw(st.integers(1, 3))
    return draw(
        st.one_of(
            st.just(CONFIG),
            st.builds(
                LifecycleConfig,
                min_training_epochs=st.just(minimum),
                max_training_epochs=st.integers(minimum, minimum + 3),
                alpha_ramp_epochs=st.integers(1, 4),
                probation_epochs=st.integers(0, 2),
                embargo_epochs=st.integers(0, 4),
                max_training_seeds=st.integers(1, 2),
                max_isolation_violations=st.integers(1, 4),
            ),
        )
    )


class LifecycleMachine(RuleBasedStateMachine):
    @initialize(config=lifecycle_configs())
    def start(self, config: LifecycleConfig) -> None:
        self.config = config
        self.state = KasminaState.initial(SLOTS)
        self.log: list[Message] = []
        self.epoch = 0

    def run(self, command: Command) -> list[Message]:
        command_id = getattr(command, "command_id", "")
        redelivered = bool(command_id) and command_id in self.state.slot(command.slot).processed  # type: ignore[union-attr]
        events = lc.decide(self.state, command, self.config)
        if redelivered:
            assert events == [], "a redelivered command had a second effect"
        for event in events:
            self.check_legal(event)
            self.state = lc.evolve(self.state, event)
            self.log.append(event)
        return events

    def check_legal(self, event: Message) -> None:
        if not isinstance(event, pb.SeedTransitioned):
            return
        current = self.state.slot(event.slot)
        assert event.from_stage == current.stage
        assert event.to_stage in TRANSITIONS[current.stage], (event.from_stage, event.to_stage)
        assert current.stage != FOSSILIZED, "FOSSILIZED was left"
        if current.stage == EMBARGOED:
            assert event.to_stage == TERMINATED or event.epoch >= current.embargo_until, "embargo broken"

    @rule(slot=st.sampled_from(SLOTS), command_id=st.sampled_from(COMMAND_IDS), g0=g0_gates)
    def germinate(self, slot: int, command_id: str, g0: Gate) -> None:
        before = self.state.slot(slot)
        events = self.run(Germinate(command_id, slot, self.epoch, "BP009", "abc", g0))
        if before.stage in (CULLED, EMBARGOED, RESETTING) and command_id not in before.processed:
            assert [type(e) for e in events] == [pb.CommandRejected]
            assert events[0].code == "embargoed"  # type: ignore[attr-defined]

    @rule(slot=st.sampled_from(SLOTS), command_id=st.sampled_from(COMMAND_IDS), m=measurements)
    def advance(self, slot: int, command_id: str, m: Measurements) -> None:
        self.run(Advance(command_id, slot, self.epoch, m))

    @rule(slot=st.sampled_from(SLOTS), command_id=st.sampled_from(COMMAND_IDS))
    def cull(self, slot: int, command_id: str) -> None:
        self.run(Cull(command_id, slot, self.epoch))

    @precondition(lambda self: self.epoch > 15)  # teardown is rare: let the other paths play out first
    @rule(slot=st.sampled_from(SLOTS), command_id=st.sampled_from(COMMAND_IDS))
    def terminate(self, slot: int, command_id: str) -> None:
        self.run(Terminate(command_id, slot, self.epoch))

    @rule(
        slot=st.sampled_from(SLOTS),
        command_id=st.sampled_from(COMMAND_IDS),
        code=st.sampled_from(["bad_signature", "deadline_expired"]),
    )
    def reject(self, slot: int, command_id: str, code: str) -> None:
        before = self.state.slot(slot).processed
        self.run(Reject(command_id, slot, code, "refused"))
        if code in lc.UNVERIFIED_CODES:
            assert self.state.slot(slot).processed == before

    @rule(data=st.data())
    def tick(self, data: st.DataObject) -> None:
        """Per slot, mostly measurements that pass every gate (the seed's gap keeps shrinking, so deep
        stages are reached), sometimes arbitrary ones (NaN, inf, regressions)."""
        self.epoch += 1
        passing = Measurements(
            host_loss=1.0, seed_loss=1.0 + 1 / self.epoch, loss_alpha0=1.0, loss_alpha1=0.9, grad_norm=1.0
        )
        drawn = st.one_of(st.just(passing), st.just(passing), st.just(passing), measurements)
        self.run(Tick(self.epoch, {slot: data.draw(drawn) for slot in SLOTS}))

    @rule(slot=st.sampled_from(SLOTS), norm=st.floats(0, 10))
    def violation(self, slot: int, norm: float) -> None:
        self.run(RecordViolation(slot, self.epoch, "conv1.weight", norm))
        assert self.state.slot(slot).violations < self.config.max_isolation_violations or (
            self.state.slot(slot).stage not in ACTIVE_STAGES
        )

    @rule(slot=st.sampled_from(SLOTS), clean=st.booleans())
    def scrub(self, slot: int, clean: bool) -> None:
        was_resetting = self.state.slot(slot).stage == RESETTING
        self.run(Scrubbed(slot, self.epoch, {"module": True, "optimizer_group": clean}))
        if was_resetting and clean:
            assert self.state.slot(slot).seed_view() == SlotState(slot=slot)

    @invariant()
    def replay_equals_live(self) -> None:
        """The fold takes no config: a log replays to the live state whatever limits were in force when it
        was written and whatever the replaying process's defaults are."""
        assert lc.replay(KasminaState.initial(SLOTS), self.log) == self.state

    @invariant()
    def the_limits_in_force_ride_on_the_events(self) -> None:
        for s in self.state.slots:
            if s.stage == EMBARGOED:
                assert s.embargo_until == s.stage_epoch + self.config.embargo_epochs
            if s.stage in ACTIVE_STAGES:
                assert s.alpha_ramp_epochs == self.config.alpha_ramp_epochs  # germinate asks for the default

    @invariant()
    def scheduler_capacity(self) -> None:
        assert self.state.count(TRAINING) <= self.config.max_training_seeds


LifecycleMachine.TestCase.settings = settings(
    max_examples=80, stateful_step_count=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestLifecycle = LifecycleMachine.TestCase


def healthy(**overrides: float) -> Measurements:
    base = Measurements(
        host_loss=1.0,
        seed_loss=1.0,
        loss_alpha0=1.0,
        loss_alpha1=0.9,
        grad_norm=1.0,
        blend_deltas=(0.02, -0.03, 0.01, -0.01),  # the blended seed changes the loss within noise
        seed_deltas=(-0.12, -0.08, -0.1, -0.1),  # fully in, the seed lowers every example's loss
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def apply(state: KasminaState, command: Command) -> tuple[KasminaState, list[Message]]:
    events = lc.decide(state, command, LifecycleConfig())
    return lc.replay(state, events), events


def germinated(slot: int = 0) -> KasminaState:
    state = KasminaState.initial([0, 1])
    g0 = gate_g0(True, True)
    state, events = apply(state, Germinate("g", slot, 1, "BP002", "hash", g0))
    assert [type(e) for e in events] == [pb.SeedTransitioned, pb.SeedGrafted]
    return state


def test_full_path_to_fossilized_records_every_gate() -> None:
    state = germinated()
    stages = []
    gates = []
    # admission: gap 0.5; then the seed's gap shrinks, the ramp completes and the probes pass
    plan = [
        healthy(seed_loss=1.5),
        healthy(seed_loss=1.2),
        healthy(seed_loss=0.8),
        healthy(),
        healthy(),
        healthy(),
        healthy(),
        healthy(),
        healthy(),
    ]
    for epoch, m in enumerate(plan, start=2):
        state, events = apply(state, Tick(epoch, {0: m}))
        for e in events:
            assert isinstance(e, pb.SeedTransitioned)
            stages.append(stage_name(e.to_stage))
            gates.extend(g.gate for g in e.gates)
    assert stages == ["TRAINING", "BLENDING", "SHADOWING", "PROBATIONARY", "FOSSILIZED"]
    assert gates == ["admission", "G1", "G2", "G3", "G4"]
    assert alpha_at(state.slot(0), 20) == 1.0


def test_alpha_ramps_over_the_configured_epochs() -> None:
    s = SlotState(slot=0, stage=BLENDING, stage_epoch=10, alpha_ramp_epochs=3)
    assert [alpha_at(s, e) for e in (10, 11, 12, 13)] == [
        pytest.approx(1 / 3),
        pytest.approx(2 / 3),
        1.0,
        1.0,
    ]
    assert alpha_at(replace(s, stage=TRAINING), 11) == 0.0


def test_failed_gate_culls_then_embargo_then_reset_to_a_pristine_slot() -> None:
    state = germinated()
    state, _ = apply(state, Tick(2, {0: healthy(seed_loss=1.5)}))
    state, events = apply(state, Tick(3, {0: healthy(grad_norm=math.nan)}))
    assert [stage_name(e.to_stage) for e in events] == ["CULLED", "EMBARGOED"]  # type: ignore[attr-defined]
    assert events[0].gates[0].gate == "G1" and not events[0].gates[0].passed  # type: ignore[attr-defined]
    for epoch in (4, 5):
        state, events = apply(state, Tick(epoch, {}))
        assert events == []
        state, events = apply(state, Germinate(f"again{epoch}", 0, epoch, "BP002", "h", gate_g0(True, True)))
        assert events[0].code == "embargoed"  # type: ignore[attr-defined]
    state, events = apply(state, Tick(6, {}))
    assert [stage_name(e.to_stage) for e in events] == ["RESETTING"]  # type: ignore[attr-defined]
    state, events = apply(state, Scrubbed(0, 6, {"module": True}))
    assert state.slot(0).seed_view() == SlotState(slot=0)
    assert "g" in state.slot(0).processed  # idempotency outlives the reset
    state, events = apply(state, Germinate("next", 0, 7, "BP002", "h", gate_g0(True, True)))
    assert events[1].seed_id == 2  # type: ignore[attr-defined]


def test_illegal_commands_are_rejected_and_never_applied() -> None:
    state = KasminaState.initial([0])
    for command in (Cull("c1", 0, 1), Advance("c2", 0, 1, healthy())):
        after, events = apply(state, command)
        assert [e.code for e in events] == ["illegal_transition"]  # type: ignore[attr-defined]
        assert after.slot(0).stage == DORMANT
    with pytest.raises(lc.IllegalTransition):
        lc.evolve(state, pb.SeedTransitioned(slot=0, from_stage=DORMANT, to_stage=FOSSILIZED))


def test_failed_g0_is_a_rejection_and_the_slot_stays_dormant() -> None:
    assert gate_g0(True, True).outcome is Outcome.PASS
    for g0 in (gate_g0(False, True, "quarantine-only"), gate_g0(True, False, "output (2, 1, 8, 8)")):
        state, events = apply(KasminaState.initial([0]), Germinate("q", 0, 1, "BP045", "h", g0))
        assert events[0].code == "gate_failed" and state.slot(0).stage == DORMANT  # type: ignore[attr-defined]
        assert "q" in state.slot(0).processed


def test_scheduler_admits_one_seed_at_a_time_oldest_first() -> None:
    state = germinated(1)
    state, _ = apply(state, Germinate("g2", 0, 1, "BP002", "h", gate_g0(True, True)))
    state, events = apply(state, Tick(2, {0: healthy(), 1: healthy()}))
    assert [(e.slot, stage_name(e.to_stage)) for e in events] == [(1, "TRAINING")]  # type: ignore[attr-defined]
    assert state.slot(0).stage == GERMINATED


def test_third_isolation_violation_culls() -> None:
    state = germinated()
    state, _ = apply(state, Tick(2, {0: healthy()}))
    for count in (1, 2, 3):
        state, events = apply(state, RecordViolation(0, 3, "conv1.weight", 0.5))
        assert events[0].violation_count == count  # type: ignore[attr-defined]
    assert [type(e).__name__ for e in events] == [
        "IsolationViolationDetected",
        "SeedTransitioned",
        "SeedTransitioned",
    ]
    assert state.slot(0).stage == EMBARGOED
