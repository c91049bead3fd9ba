"""Field reports: how an applied command turned out once its observation window closed (SPEC §10).

A germination's window closes when its seed reaches FOSSILIZED, is culled or is terminated, or after
`germination_report_epochs`: the report says what the graft caused, the seed's last measured
contribution (validation loss at alpha 0 − alpha 1) and where it ended and why. Other commands' windows
close after `observation_window` epochs and are judged on the change of validation accuracy."""

from __future__ import annotations

from google.protobuf.message import Message

from domains.tamiyo.config import HeuristicConfig
from domains.tamiyo.observation import Observation
from domains.tamiyo.risk import to_pb_level
from domains.tamiyo.state import TamiyoState, TrackedCommand
from leyline import pb
from leyline.lifecycle import DORMANT, FOSSILIZED, QUARANTINE_STAGES, TERMINATED
from leyline.seed_metrics import CONTRIBUTION_METRIC

# The stages in which a germinated or advanced seed's window reports ABORTED: it was culled meanwhile.
ABORTING_STAGES = QUARANTINE_STAGES | {DORMANT}
# The stages in which a germinated seed's story is over: its report closes there (a culled seed is
# EMBARGOED at the boundary that culled it).
ENDED_STAGES = QUARANTINE_STAGES | {FOSSILIZED, TERMINATED}


def field_reports(state: TamiyoState, observation: Observation, config: HeuristicConfig) -> list[Message]:
    """A FieldReportIssued for every observation window that closed at this boundary (or was cut short
    by a rollback)."""
    reports: list[Message] = []
    for window in state.windows:
        rolled_back = observation.epoch < window.epoch
        age = observation.epoch - window.epoch
        seed = next((s for s in observation.seeds if s.slot == window.slot), None)
        if window.action == "germinate":
            ended = seed is not None and seed.stage in ENDED_STAGES  # an unlisted slot tells nothing
            if not (rolled_back or ended or age >= config.germination_report_epochs):
                continue
            report = _germination_report(window, observation, seed, rolled_back, config)
        elif not rolled_back and age < config.observation_window:
            continue
        else:
            report = _report(window, observation, rolled_back, config)
        reports.append(pb.FieldReportIssued(report=report))
    return reports


def _germination_report(
    window: TrackedCommand,
    observation: Observation,
    seed: pb.SeedState | None,
    rolled_back: bool,
    config: HeuristicConfig,
) -> pb.FieldReport:
    """What the graft caused: the seed's last measured contribution and where it ended (and why)."""
    report = _report(window, observation, rolled_back, config)
    contribution = window.contribution
    if seed is not None and CONTRIBUTION_METRIC in seed.metrics:
        contribution = seed.metrics[CONTRIBUTION_METRIC]
    stage = seed.stage if seed is not None else DORMANT
    if rolled_back or stage in ABORTING_STAGES or stage == TERMINATED:
        report.outcome = pb.FIELD_REPORT_OUTCOME_ABORTED  # culled, torn down or rolled back
    elif contribution is not None and contribution > 0:
        report.outcome = pb.FIELD_REPORT_OUTCOME_SUCCESS
    elif contribution is not None and contribution < 0:
        report.outcome = pb.FIELD_REPORT_OUTCOME_REGRESSION
    else:
        report.outcome = pb.FIELD_REPORT_OUTCOME_NEUTRAL  # no effect, or not measured
    report.seed_stage = stage
    report.seed_reason = seed.outcome_reason if seed is not None else ""
    if contribution is not None:  # absent: never measured (not zero)
        report.metrics["contribution"] = contribution
    return report


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
