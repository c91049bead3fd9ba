"""Field reports: how an applied command turned out once its observation window closed (SPEC §10)."""

from __future__ import annotations

from google.protobuf.message import Message

from domains.tamiyo.config import HeuristicConfig
from domains.tamiyo.observation import Observation
from domains.tamiyo.risk import to_pb_level
from domains.tamiyo.state import TamiyoState, TrackedCommand
from leyline import pb
from leyline.lifecycle import DORMANT, QUARANTINE_STAGES

# The stages in which a germinated or advanced seed's window reports ABORTED: it was culled meanwhile.
ABORTING_STAGES = QUARANTINE_STAGES | {DORMANT}


def field_reports(state: TamiyoState, observation: Observation, config: HeuristicConfig) -> list[Message]:
    """A FieldReportIssued for every observation window that closed at this boundary (or was cut short
    by a rollback)."""
    reports: list[Message] = []
    for window in state.windows:
        rolled_back = observation.epoch < window.epoch
        if not rolled_back and observation.epoch < window.epoch + config.observation_window:
            continue
        report = _report(window, observation, rolled_back, config)
        reports.append(pb.FieldReportIssued(report=report))
    return reports


def _report(
    window: TrackedCommand, observation: Observation, rolled_back: bool, config: HeuristicConfig
) -> pb.FieldReport:
    delta_accuracy = observation.validation_accuracy - window.baseline_accuracy
    delta_loss = observation.validation_loss - window.baseline_loss
    slot_stage = next((s.stage for s in observation.seeds if s.slot == window.slot), None)
    if rolled_back or (window.action in ("germinate", "advance") and slot_stage in ABORTING_STAGES):
        outcome = pb.FIELD_REPORT_OUTCOME_ABORTED
    elif delta_accuracy >= config.success_accuracy_delta:
        outcome = pb.FIELD_REPORT_OUTCOME_SUCCESS
    elif delta_accuracy <= config.regression_accuracy_delta:
        outcome = pb.FIELD_REPORT_OUTCOME_REGRESSION
    else:
        outcome = pb.FIELD_REPORT_OUTCOME_NEUTRAL
    return pb.FieldReport(
        report_id=f"fr-{window.command_id}",
        command_id=window.command_id,
        run_id=observation.run_id,
        seed_id=window.seed_id,
        slot=window.slot,
        blueprint_id=window.blueprint_id,
        outcome=outcome,
        delta_accuracy=delta_accuracy,
        delta_loss=delta_loss,
        delta_parameters=observation.parameters - window.baseline_parameters,
        policy_version=window.policy_version,
        risk_at_decision=to_pb_level(window.risk_level),
        start_epoch=window.epoch,
        end_epoch=observation.epoch,
        metrics={
            "accuracy_start": window.baseline_accuracy,
            "accuracy_end": observation.validation_accuracy,
            "loss_start": window.baseline_loss,
            "loss_end": observation.validation_loss,
        },
    )
