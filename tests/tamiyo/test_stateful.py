"""A hypothesis state machine over the controller: random epochs, hook times, seed outcomes, application or
rejection of commands, Tolaria's overrun signal and checkpoint restores."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from domains.tamiyo import HeuristicConfig, HeuristicPolicy
from domains.tamiyo.controller import TamiyoController
from domains.tamiyo.reports import ENDED_STAGES
from domains.tamiyo.state import TamiyoState, evolve
from leyline import decode_payload, pb
from leyline.signing import Keyring, Signer, Verifier
from tests.tamiyo.scripted import RUN_ID, context, dormant_slots, estimate, packet

KEYRING = Keyring.generate()


class ControllerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tamiyo = self.new_controller()
        self.verifier = Verifier(KEYRING)
        self.log: list[pb.EventEnvelope] = []
        self.epoch = 0
        self.seeds = dormant_slots(headroom=(0.5, 0.2))
        self.applied: list[str] = []
        self.applied_ever: set[str] = set()
        self.reported: list[str] = []
        self.window_opened_at: dict[str, int] = {}

    @staticmethod
    def new_controller() -> TamiyoController:
        config = HeuristicConfig(plateau_window=2, germination_cooldown_epochs=1, parameter_budget=2000)
        return TamiyoController(
            RUN_ID, Signer(KEYRING), HeuristicPolicy(config), parameter_estimator=estimate
        )

    @rule(
        loss=st.floats(min_value=0.1, max_value=2.0),
        hook_ms=st.sampled_from([1.0, 25.0, 60.0, 200.0]),
        apply=st.booleans(),
    )
    def boundary(self, loss: float, hook_ms: float, apply: bool) -> None:
        output = self.tamiyo.decide(
            packet(self.epoch, loss), context(self.epoch, self.seeds, hook_ms=hook_ms, applied=self.applied)
        )
        decisions = [e for e in output.events if e.event_type == "DecisionMade"]
        assert len(decisions) == 1
        decision = decode_payload(decisions[0])
        assert isinstance(decision, pb.DecisionMade)
        assert list(decision.applied_command_ids) == self.applied
        for envelope in output.events:
            if envelope.event_type == "FieldReportIssued":
                report = decode_payload(envelope).report  # type: ignore[attr-defined]
                assert report.command_id in self.applied_ever
                # a window closes after its epochs, or earlier when the grafted seed's story ended
                assert report.end_epoch - report.start_epoch >= 3 or report.seed_stage in ENDED_STAGES
                self.reported.append(report.command_id)
        self.log.extend(output.events)
        self.applied = []
        if output.command is not None:
            self.verifier.verify(output.command)
            issued = decode_payload(output.command)
            assert isinstance(issued, pb.AdaptationCommandIssued)
            assert decision.command_id == issued.command.command_id == output.command.event_id
            self.log.append(output.command)
            if apply:
                self.applied = [output.command.event_id]
                self.applied_ever.add(output.command.event_id)
                if issued.command.seed_operation.operation == pb.SEED_OP_GERMINATE:
                    slot = issued.command.target_slot
                    self.seeds[slot] = pb.SeedState(
                        slot=slot, seed_id=issued.command.target_seed_id, stage=pb.SEED_STAGE_GERMINATED
                    )
        else:
            assert decision.command_id == ""
        self.epoch += 1

    @rule(outcome=st.sampled_from([pb.SEED_STAGE_FOSSILIZED, pb.SEED_STAGE_EMBARGOED, pb.SEED_STAGE_DORMANT]))
    def seed_moves_on(self, outcome: pb.SeedLifecycleStage) -> None:
        for seed in self.seeds:
            if seed.stage == pb.SEED_STAGE_GERMINATED:
                seed.stage = outcome

    @rule()
    def hook_overrun(self) -> None:
        """Tolaria reports the overrun of the last boundary's hook: conservative mode, unless that
        boundary carried out a seed command of Tamiyo's (the overrun is the command's cost)."""
        was = self.tamiyo.state.conservative
        boundary = max(self.epoch - 1, 0)
        cost = self.tamiyo.issued_hook_action(boundary)
        events = self.tamiyo.enter_conservative_mode("hook overran", boundary)
        assert len(events) == (0 if was or cost else 1)
        self.log.extend(events)
        assert self.tamiyo.state.conservative == (was or not cost)

    @rule()
    def restore_from_checkpoint(self) -> None:
        saved = self.tamiyo.state_dict()
        self.tamiyo = self.new_controller()
        self.tamiyo.load_state_dict(saved)

    @invariant()
    def state_is_the_fold_of_the_log(self) -> None:
        state = TamiyoState()
        for envelope in self.log:
            state = evolve(state, decode_payload(envelope))
        assert state == self.tamiyo.state

    @invariant()
    def each_applied_command_is_reported_at_most_once(self) -> None:
        assert len(self.reported) == len(set(self.reported))
        assert all(w.command_id in self.applied_ever for w in self.tamiyo.state.windows)
        assert len(self.tamiyo.state.pending) <= 1


ControllerMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=30, deadline=None)
TestControllerMachine = ControllerMachine.TestCase
