"""The controller edge: envelopes, signing, timeout fallback, conservative hysteresis, field reports."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Sequence

import pytest
from google.protobuf.message import Message
from prometheus_client import REGISTRY

from domains.tamiyo import HeuristicConfig, HeuristicPolicy, Observation
from domains.tamiyo.controller import TamiyoController
from domains.tamiyo.state import TamiyoState, evolve
from leyline import category_of, decode_payload, pb
from leyline.controller import Controller, ControllerOutput
from leyline.errors import BadSignature
from leyline.lifecycle import LifecycleConfig
from leyline.seed_metrics import CONTRIBUTION_METRIC as CONTRIBUTION
from leyline.signing import Keyring, Signer, Verifier
from tests.tamiyo.scripted import (
    PLATEAU_LOSSES,
    PLATEAU_SCHEDULE,
    RUN_ID,
    context,
    dormant_slots,
    estimate,
    packet,
)

KEYRING = Keyring.generate()


def controller(policy: object | None = None, timeout: float = 2.0, **config: object) -> TamiyoController:
    chosen = policy or HeuristicPolicy(HeuristicConfig(**config))  # type: ignore[arg-type]
    return TamiyoController(
        RUN_ID,
        Signer(KEYRING),
        chosen,  # type: ignore[arg-type]
        decision_timeout_s=timeout,
        parameter_estimator=estimate,
    )


def payloads(envelopes: Sequence[pb.EventEnvelope]) -> list[Message]:
    return [decode_payload(e) for e in envelopes]


def of_type(output: ControllerOutput, event_type: str) -> list[pb.EventEnvelope]:
    return [e for e in output.events if e.event_type == event_type]


def only_decision(output: ControllerOutput) -> pb.DecisionMade:
    (envelope,) = of_type(output, "DecisionMade")
    decision = decode_payload(envelope)
    assert isinstance(decision, pb.DecisionMade)
    return decision


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_implements_the_controller_protocol() -> None:
    tamiyo: Controller = controller()
    assert tamiyo.policy_name == "heuristic" and tamiyo.policy_version == "1.0"


def test_every_decision_is_a_decision_made_event_on_the_decision_stream() -> None:
    tamiyo = controller()
    output = tamiyo.decide(packet(0, 1.0), context(0))
    assert output.command is None
    (envelope,) = output.events
    assert envelope.event_type == "DecisionMade" and envelope.stream == f"decision-{RUN_ID}"
    assert envelope.run_id == RUN_ID and envelope.epoch == 0 and envelope.source == "tamiyo"
    decision = only_decision(output)
    assert decision.packet_id == 1000 and decision.command_id == "" and decision.action == "noop"
    assert decision.latency_ms > 0
    assert decision.inputs_summary["validation_loss"] == pytest.approx(1.0)
    assert decision.inputs_summary["parameters"] == 700


def test_the_context_lifecycle_reaches_the_policy() -> None:
    slow = LifecycleConfig(alpha_ramp_epochs=7)
    observed = controller().observe(packet(0, 1.0), context(0, lifecycle=slow))
    assert observed.lifecycle is slow
    tamiyo = controller(use_catalogue_metadata=False)
    for epoch, loss in enumerate(PLATEAU_LOSSES):
        output = tamiyo.decide(packet(epoch, loss), context(epoch, lifecycle=slow))
        if output.command is not None:
            command = decode_payload(output.command)
            assert isinstance(command, pb.AdaptationCommandIssued)
            assert command.command.seed_operation.alpha_ramp_epochs == 7
            return
    raise AssertionError("no germination")


def drive_to_germination(tamiyo: TamiyoController) -> tuple[int, ControllerOutput]:
    for epoch, loss in enumerate(PLATEAU_LOSSES):
        output = tamiyo.decide(packet(epoch, loss), context(epoch))
        if output.command is not None:
            return epoch, output
    raise AssertionError("no germination")


def test_commands_are_signed_and_verify_and_tampering_is_detected() -> None:
    tamiyo = controller()
    _, output = drive_to_germination(tamiyo)
    command = output.command
    assert command is not None
    assert command.event_type == "AdaptationCommandIssued"
    issued = decode_payload(command)
    assert isinstance(issued, pb.AdaptationCommandIssued)
    command_id = issued.command.command_id
    assert command.stream == f"command-{command_id}" and category_of(command.stream) == "command"
    assert command.event_id == command_id and command.correlation_id == command_id
    decision_envelope = of_type(output, "DecisionMade")[0]
    assert command.causation_id == decision_envelope.event_id == issued.decision_event_id
    assert decision_envelope.correlation_id == command_id
    assert only_decision(output).command_id == command_id
    assert command.key_id == KEYRING.current and len(command.hmac) == 32
    Verifier(KEYRING).verify(command)
    forged = pb.EventEnvelope()
    forged.CopyFrom(command)
    issued.command.seed_operation.blueprint_id = "BP045"
    forged.payload = issued.SerializeToString()
    with pytest.raises(BadSignature):
        Verifier(KEYRING).verify(forged)


class BlockingPolicy:
    name = "blocking"
    version = "0"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def decide(self, state: TamiyoState, observation: Observation) -> list[Message]:
        self.calls += 1
        self.release.wait()
        return HeuristicPolicy().decide(state, observation)


class FailingPolicy:
    name = "failing"
    version = "0"

    def decide(self, state: TamiyoState, observation: Observation) -> list[Message]:
        raise RuntimeError("weights are corrupt")


def test_a_decision_past_its_timeout_is_a_safe_noop_and_enters_conservative_mode() -> None:
    policy = BlockingPolicy()
    tamiyo = controller(policy, timeout=0.05)
    before = metric("esper_tamiyo_decision_failures_total", cause="timeout")
    output = tamiyo.decide(packet(0, 1.0), context(0))
    try:
        assert output.command is None
        decision = only_decision(output)
        assert decision.action == "noop" and decision.conservative
        assert decision.reason == "safe no-op: decision exceeded its timeout of 0.05 s"
        assert decision.latency_ms >= 50
        (change_envelope,) = of_type(output, "ConservativeModeChanged")
        change = decode_payload(change_envelope)
        assert isinstance(change, pb.ConservativeModeChanged)
        assert change.active and "timeout" in change.reason and change.epoch == 0
        assert change_envelope.causation_id == of_type(output, "DecisionMade")[0].event_id
        assert tamiyo.state.conservative
        assert metric("esper_tamiyo_decision_failures_total", cause="timeout") == before + 1
        assert metric("esper_tamiyo_conservative_mode") == 1
        # a second overrun while conservative: still a no-op, no second mode change
        second = tamiyo.decide(packet(1, 1.0), context(1))
        assert only_decision(second).action == "noop"
        assert of_type(second, "ConservativeModeChanged") == []
    finally:
        policy.release.set()
    # the abandoned results never reach the state: two decisions, both the fallback's
    assert tamiyo.state.decisions == 2
    # a policy that answers in time again is heard again, on a fresh worker
    third = only_decision(tamiyo.decide(packet(2, 1.0), context(2)))
    assert not third.reason.startswith("safe no-op") and policy.calls == 3


def test_off_the_main_thread_an_overrunning_worker_is_abandoned() -> None:
    policy = BlockingPolicy()
    tamiyo = controller(policy, timeout=0.05)
    outputs: list[ControllerOutput] = []
    caller = threading.Thread(target=lambda: outputs.append(tamiyo.decide(packet(0, 1.0), context(0))))
    caller.start()
    caller.join()
    policy.release.set()
    decision = only_decision(outputs[0])
    assert decision.reason == "safe no-op: decision exceeded its timeout of 0.05 s"
    assert tamiyo.state.conservative
    later: list[ControllerOutput] = []
    caller = threading.Thread(target=lambda: later.append(tamiyo.decide(packet(1, 1.0), context(1))))
    caller.start()
    caller.join()
    assert not only_decision(later[0]).reason.startswith("safe no-op")


class OuterDeadline(Exception):
    pass


def test_an_outer_interval_timer_is_kept_and_still_fires() -> None:
    def outer(signum: int, frame: object) -> None:
        raise OuterDeadline

    previous = signal.signal(signal.SIGALRM, outer)
    saved = signal.setitimer(signal.ITIMER_REAL, 0)
    try:
        signal.setitimer(signal.ITIMER_REAL, 100.0)
        controller().decide(packet(0, 1.0), context(0))
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 0 < remaining <= 100.0
        assert signal.getsignal(signal.SIGALRM) is outer
        # an outer deadline that comes before the decision's own: the outer handler runs
        policy = BlockingPolicy()
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(OuterDeadline):
            controller(policy, timeout=5.0).decide(packet(0, 1.0), context(0))
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    finally:
        signal.signal(signal.SIGALRM, previous)
        signal.setitimer(signal.ITIMER_REAL, *saved)


def test_a_policy_that_raises_is_contained_as_a_safe_noop() -> None:
    tamiyo = controller(FailingPolicy())
    output = tamiyo.decide(packet(0, 1.0), context(0))
    decision = only_decision(output)
    assert decision.action == "noop" and decision.conservative
    assert decision.reason == "safe no-op: policy failed: RuntimeError: weights are corrupt"
    assert len(of_type(output, "ConservativeModeChanged")) == 1


def mode_changes(output: ControllerOutput) -> list[bool]:
    return [decode_payload(e).active for e in of_type(output, "ConservativeModeChanged")]  # type: ignore[attr-defined]


def test_conservative_mode_hysteresis_over_three_windows() -> None:
    tamiyo = controller()
    red_hook_ms = 18.0 * 5  # level 3
    script = [2.0, red_hook_ms, red_hook_ms, 2.0, 2.0, 2.0, 2.0, red_hook_ms, 2.0]
    changes = []
    levels = []
    for epoch, hook_ms in enumerate(script):
        output = tamiyo.decide(packet(epoch, 1.0 - 0.01 * epoch), context(epoch, hook_ms=hook_ms))
        changes.append(mode_changes(output))
        levels.append(only_decision(output).risk_level - 1)
    assert levels == [0, 3, 3, 3, 3, 0, 0, 3, 3]
    # entered at once; left after the 3rd calm window (epochs 3, 4, 5); entered again at once
    assert changes == [[], [True], [], [], [], [False], [], [True], []]


def test_enter_conservative_mode_from_tolaria_is_an_event_once() -> None:
    tamiyo = controller()
    (envelope,) = tamiyo.enter_conservative_mode("end-of-epoch hook overran 18 ms", epoch=4)
    change = decode_payload(envelope)
    assert isinstance(change, pb.ConservativeModeChanged)
    assert envelope.stream == f"decision-{RUN_ID}" and envelope.epoch == 4
    assert change.active and change.reason == "end-of-epoch hook overran 18 ms" and change.epoch == 4
    assert tamiyo.enter_conservative_mode("again", epoch=5) == []
    assert only_decision(tamiyo.decide(packet(5, 1.0), context(5))).conservative


def test_field_report_contents_against_a_scripted_run() -> None:
    tamiyo = controller(**PLATEAU_SCHEDULE)
    accuracies = [0.80, 0.85, 0.88, 0.90, 0.90, 0.90, 0.90, 0.91, 0.93, 0.95, 0.95, 0.95]
    parameters = 700
    command_id = ""
    seeds = dormant_slots(headroom=(1.0, 0.5))
    reports: list[tuple[int, pb.EventEnvelope]] = []
    germinated_at = -1
    for epoch, loss in enumerate(PLATEAU_LOSSES):
        applied = [command_id] if command_id and epoch == germinated_at + 1 else []
        if epoch == 8:  # measured while blending, then fossilized: the report closes at the terminal stage
            seeds[0] = pb.SeedState(
                slot=0, seed_id=1, stage=pb.SEED_STAGE_BLENDING, metrics={CONTRIBUTION: 0.04}
            )
        if epoch == 9:
            seeds[0] = pb.SeedState(
                slot=0, seed_id=1, stage=pb.SEED_STAGE_FOSSILIZED, outcome_reason="G4 passed"
            )
        output = tamiyo.decide(
            packet(epoch, loss, validation_accuracy=accuracies[epoch]),
            context(epoch, seeds, parameters=parameters, applied=applied),
        )
        reports.extend((epoch, e) for e in of_type(output, "FieldReportIssued"))
        if output.command is not None and germinated_at < 0:  # the first graft (slot 1 follows at 9)
            issued = decode_payload(output.command)
            assert isinstance(issued, pb.AdaptationCommandIssued)
            command_id, germinated_at = issued.command.command_id, epoch
            blueprint = issued.command.seed_operation.blueprint_id
            seeds = [
                pb.SeedState(slot=0, seed_id=1, stage=pb.SEED_STAGE_GERMINATED, blueprint_id=blueprint),
                pb.SeedState(slot=1, stage=pb.SEED_STAGE_DORMANT),
            ]
            parameters = 700 + 900
    assert germinated_at == 6
    ((closed_at, envelope),) = reports
    assert closed_at == 9  # when the seed reached FOSSILIZED, not after a fixed window
    assert envelope.stream == f"report-{RUN_ID}"
    assert envelope.correlation_id == command_id and envelope.causation_id == command_id
    report = decode_payload(envelope).report  # type: ignore[attr-defined]
    assert report.command_id == command_id and report.run_id == RUN_ID
    assert report.report_id == f"fr-{command_id}"
    assert (report.slot, report.seed_id, report.blueprint_id) == (0, 1, "BP023")
    assert report.outcome == pb.FIELD_REPORT_OUTCOME_SUCCESS
    assert report.delta_accuracy == pytest.approx(0.95 - 0.90)
    assert report.delta_loss == pytest.approx(PLATEAU_LOSSES[9] - PLATEAU_LOSSES[6])
    assert report.delta_parameters == 900
    assert report.policy_version == "heuristic-1.0"
    assert report.risk_at_decision == pb.RISK_LEVEL_GREEN
    assert (report.start_epoch, report.end_epoch) == (6, 9)
    assert report.metrics["accuracy_start"] == pytest.approx(0.90)
    assert report.metrics["contribution"] == pytest.approx(0.04)  # the last one measured, at epoch 8
    assert (report.seed_stage, report.seed_reason) == (pb.SEED_STAGE_FOSSILIZED, "G4 passed")
    assert tamiyo.state.windows == ()


def test_a_command_that_was_not_applied_gets_no_field_report() -> None:
    tamiyo = controller(**PLATEAU_SCHEDULE)
    epoch, _ = drive_to_germination(tamiyo)
    assert len(tamiyo.state.pending) == 1
    for later in range(epoch + 1, epoch + 6):
        output = tamiyo.decide(packet(later, 0.4), context(later, parameters=700))
        assert of_type(output, "FieldReportIssued") == []
    assert tamiyo.state.pending == () and tamiyo.state.windows == ()


def test_a_germination_report_says_what_the_seed_caused_and_where_it_ended() -> None:
    def report_after(final: pb.SeedState, epochs: int = 3, **config: object) -> tuple[int, pb.FieldReport]:
        tamiyo = controller(**config)
        epoch, output = drive_to_germination(tamiyo)
        issued = decode_payload(output.command)  # type: ignore[arg-type]
        command_id = issued.command.command_id  # type: ignore[attr-defined]
        training = pb.SeedState(slot=0, seed_id=1, stage=pb.SEED_STAGE_TRAINING)
        for later in range(epoch + 1, epoch + 1 + epochs):
            applied = [command_id] if later == epoch + 1 else []
            seeds = [
                final if later == epoch + epochs else training,
                pb.SeedState(slot=1, stage=pb.SEED_STAGE_DORMANT),
            ]
            out = tamiyo.decide(packet(later, 0.4), context(later, seeds, applied=applied))
            reports = of_type(out, "FieldReportIssued")
            if reports:
                return later - epoch, decode_payload(reports[0]).report  # type: ignore[attr-defined]
        raise AssertionError("no report")

    culled = pb.SeedState(
        slot=0, seed_id=1, stage=pb.SEED_STAGE_EMBARGOED, outcome_reason="G2 failed: host loss degraded"
    )
    culled.metrics[CONTRIBUTION] = -0.03
    age, report = report_after(culled, epochs=5)
    assert age == 5 and report.outcome == pb.FIELD_REPORT_OUTCOME_ABORTED
    assert (report.seed_stage, report.seed_reason) == (pb.SEED_STAGE_EMBARGOED, culled.outcome_reason)
    assert report.metrics["contribution"] == pytest.approx(-0.03)
    helping = pb.SeedState(slot=0, seed_id=1, stage=pb.SEED_STAGE_FOSSILIZED, outcome_reason="G4 passed")
    helping.metrics[CONTRIBUTION] = 0.02
    assert report_after(helping)[1].outcome == pb.FIELD_REPORT_OUTCOME_SUCCESS
    still = pb.SeedState(slot=0, seed_id=1, stage=pb.SEED_STAGE_BLENDING)
    still.metrics[CONTRIBUTION] = -0.01
    age, report = report_after(still, epochs=4, germination_report_epochs=4)  # the window's bound
    assert age == 4 and report.outcome == pb.FIELD_REPORT_OUTCOME_REGRESSION
    assert report.seed_stage == pb.SEED_STAGE_BLENDING and report.seed_reason == ""


def test_state_rebuilds_from_its_events_and_round_trips_through_a_checkpoint() -> None:
    tamiyo = controller()
    log: list[pb.EventEnvelope] = []
    for epoch, loss in enumerate(PLATEAU_LOSSES[:8]):
        output = tamiyo.decide(packet(epoch, loss), context(epoch, hook_ms=100.0 if epoch == 2 else 2.0))
        log.extend(output.events)
        if output.command is not None:
            log.append(output.command)
    state = TamiyoState()
    for envelope in log:
        state = evolve(state, decode_payload(envelope))
    assert state == tamiyo.state
    document = json.loads(json.dumps(tamiyo.state_dict()))
    restored = controller()
    restored.load_state_dict(document)
    assert restored.state == tamiyo.state
    a = tamiyo.decide(packet(8, 0.4), context(8))
    b = restored.decide(packet(8, 0.4), context(8))
    assert only_decision(a).reason == only_decision(b).reason
    assert only_decision(a).inputs_summary == only_decision(b).inputs_summary


def test_metrics_count_decisions_commands_and_latency() -> None:
    before = metric("esper_tamiyo_commands_total", action="germinate")
    count_before = metric("esper_tamiyo_decision_latency_seconds_count")
    tamiyo = controller()
    epoch, _ = drive_to_germination(tamiyo)
    assert metric("esper_tamiyo_commands_total", action="germinate") == before + 1
    assert metric("esper_tamiyo_decision_latency_seconds_count") == count_before + epoch + 1
