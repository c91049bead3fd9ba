"""Tamiyo's state and its evolution from Tamiyo's own events (pure, torch-free).

`evolve(state, payload)` folds one of DecisionMade, AdaptationCommandIssued, ConservativeModeChanged or
FieldReportIssued into the state (a germination's report adds its outcome, outcomes.py), so the
controller's state can be rebuilt from the `decision-`, `command-` and `report-` streams of a run as well
as restored from a checkpoint (`to_dict`/`from_dict`).

A command goes through two phases: *pending* from issue until the next decision, which lists the command
ids Kasmina applied (DecisionMade.applied_command_ids); an applied command opens an *observation window*
that a later decision closes into a field report; a command that was not applied (rejected, or never
executed) is dropped without a report.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from domains.tamiyo.outcomes import Outcome, outcome_of
from domains.tamiyo.risk import from_pb_level
from leyline import pb

# An inputs_summary key: this decision's losses start the loss references again (observation.py)
REFERENCES_RESET = "references_reset"
HISTORY = 32  # loss and gradient-norm windows kept for plateau and drift detection
RISK_HISTORY = 16
SAFE_LEVEL = 1  # a window at or below this raw level is a rollback target


def contribution_key(slot: int) -> str:
    """Where DecisionMade.inputs_summary records a slot's measured seed contribution (field reports)."""
    return f"contribution_slot{slot}"


@dataclass(frozen=True)
class TrackedCommand:
    """An issued command: pending until applied, then an open observation window."""

    command_id: str
    epoch: int  # epoch whose boundary issued it; the window starts here
    action: str  # "germinate", "advance", "cull", "rollback"
    slot: int
    seed_id: int
    blueprint_id: str
    risk_level: int  # effective level 0–4 at decision time
    policy_version: str
    baseline_accuracy: float
    baseline_loss: float
    baseline_parameters: int
    contribution: float | None = None  # the seed's last measured contribution (loss at alpha 0 − 1)


@dataclass(frozen=True)
class TamiyoState:
    validation_losses: tuple[float, ...] = ()
    grad_norms: tuple[float, ...] = ()
    best_training_loss: float = math.inf
    raw_levels: tuple[int, ...] = ()
    conservative: bool = False
    windows_in_mode: int = 0  # decisions since conservative mode last changed
    pending: tuple[TrackedCommand, ...] = ()
    windows: tuple[TrackedCommand, ...] = ()
    last_germination_epoch: int = -1
    cull_epochs: tuple[tuple[int, int], ...] = ()  # (slot, epoch of Tamiyo's last cull there)
    safe_epoch: int = -1  # last epoch whose raw risk level was at most SAFE_LEVEL
    last_rollback_target: int = -1
    last_epoch: int = -1
    last_accuracy: float = 0.0
    last_loss: float = math.inf
    last_parameters: int = 0
    decisions: int = 0
    outcomes: tuple[Outcome, ...] = ()  # the run's germinations that ended, from their field reports

    def cull_epoch(self, slot: int) -> int | None:
        return dict(self.cull_epochs).get(slot)


def resolve_pending(state: TamiyoState, applied: tuple[str, ...] | list[str]) -> TamiyoState:
    """Pending commands that were applied open their windows; the others are dropped."""
    if not state.pending:
        return state
    applied_ids = set(applied)
    opened = tuple(command for command in state.pending if command.command_id in applied_ids)
    return dataclasses.replace(state, pending=(), windows=state.windows + opened)


def with_outcomes(state: TamiyoState, reports: list[Message]) -> TamiyoState:
    """The state with the outcomes of these FieldReportIssued payloads added (as evolve adds them)."""
    found = (outcome_of(p.report) for p in reports if isinstance(p, pb.FieldReportIssued))
    return dataclasses.replace(state, outcomes=(*state.outcomes, *(o for o in found if o is not None)))


def _bounded(values: tuple[Any, ...], value: Any, limit: int) -> tuple[Any, ...]:
    return (*values, value)[-limit:]


def evolve(state: TamiyoState, payload: Message) -> TamiyoState:
    if isinstance(payload, pb.DecisionMade):
        return _decision(state, payload)
    if isinstance(payload, pb.AdaptationCommandIssued):
        return _command(state, payload.command)
    if isinstance(payload, pb.ConservativeModeChanged):
        return dataclasses.replace(state, conservative=payload.active, windows_in_mode=0)
    if isinstance(payload, pb.FieldReportIssued):
        closed = payload.report.command_id
        outcome = outcome_of(payload.report)
        return dataclasses.replace(
            state,
            windows=tuple(w for w in state.windows if w.command_id != closed),
            outcomes=state.outcomes if outcome is None else (*state.outcomes, outcome),
        )
    raise TypeError(f"Tamiyo's state does not evolve from {type(payload).__name__}")


def _decision(state: TamiyoState, decision: pb.DecisionMade) -> TamiyoState:
    inputs = decision.inputs_summary
    state = resolve_pending(state, list(decision.applied_command_ids))
    windows = tuple(
        dataclasses.replace(w, contribution=inputs[contribution_key(w.slot)])
        if w.action == "germinate" and contribution_key(w.slot) in inputs
        else w
        for w in state.windows
    )
    raw = int(inputs.get("risk_raw", from_pb_level(decision.risk_level)))
    training_loss = inputs.get("training_loss", math.inf)
    best = state.best_training_loss
    if math.isfinite(training_loss):
        best = min(best, training_loss)
    grad_norms = state.grad_norms
    if "grad_norm" in inputs:
        grad_norms = _bounded(grad_norms, inputs["grad_norm"], HISTORY)
    validation_losses = state.validation_losses
    if inputs.get(REFERENCES_RESET):  # the first losses measured without a culled seed (observation.py)
        validation_losses = ()
        best = training_loss
    if "validation_loss" in inputs:
        validation_losses = _bounded(validation_losses, inputs["validation_loss"], HISTORY)
    return dataclasses.replace(
        state,
        windows=windows,
        validation_losses=validation_losses,
        grad_norms=grad_norms,
        best_training_loss=best,
        raw_levels=_bounded(state.raw_levels, raw, RISK_HISTORY),
        windows_in_mode=state.windows_in_mode + 1,
        safe_epoch=decision.epoch if raw <= SAFE_LEVEL else state.safe_epoch,
        last_epoch=decision.epoch,
        last_accuracy=inputs.get("validation_accuracy", state.last_accuracy),
        last_loss=inputs.get("validation_loss", state.last_loss),
        last_parameters=int(inputs.get("parameters", state.last_parameters)),
        decisions=state.decisions + 1,
    )


def _command(state: TamiyoState, command: pb.AdaptationCommand) -> TamiyoState:
    action = command.annotations.get("action", "")
    tracked = TrackedCommand(
        command_id=command.command_id,
        epoch=state.last_epoch,
        action=action,
        slot=command.target_slot,
        seed_id=command.target_seed_id,
        blueprint_id=command.seed_operation.blueprint_id,
        risk_level=int(command.annotations.get("risk_level", "0")),
        policy_version=command.policy_version,
        baseline_accuracy=state.last_accuracy,
        baseline_loss=state.last_loss,
        baseline_parameters=state.last_parameters,
    )
    changes: dict[str, Any] = {"pending": (*state.pending, tracked)}
    if action == "germinate":
        changes["last_germination_epoch"] = state.last_epoch
    elif action == "cull":
        culls = dict(state.cull_epochs)
        culls[command.target_slot] = state.last_epoch
        changes["cull_epochs"] = tuple(sorted(culls.items()))
    elif action == "rollback":
        changes["last_rollback_target"] = command.rollback.target_epoch
    return dataclasses.replace(state, **changes)


def to_dict(state: TamiyoState) -> dict[str, Any]:
    """A JSON-compatible form (infinities as strings) for checkpoints."""
    document = dataclasses.asdict(state)
    for key in ("best_training_loss", "last_loss"):
        document[key] = repr(document[key])
    document["validation_losses"] = [repr(v) for v in state.validation_losses]
    document["grad_norms"] = [repr(v) for v in state.grad_norms]
    return document


def from_dict(document: Mapping[str, Any]) -> TamiyoState:
    data = dict(document)
    for key in ("best_training_loss", "last_loss"):
        data[key] = float(data[key])
    data["validation_losses"] = tuple(float(v) for v in data["validation_losses"])
    data["grad_norms"] = tuple(float(v) for v in data["grad_norms"])
    data["raw_levels"] = tuple(int(v) for v in data["raw_levels"])
    data["pending"] = tuple(TrackedCommand(**c) for c in data["pending"])
    data["windows"] = tuple(TrackedCommand(**c) for c in data["windows"])
    data["cull_epochs"] = tuple((int(s), int(e)) for s, e in data["cull_epochs"])
    data["outcomes"] = tuple(Outcome(**o) for o in data.get("outcomes", ()))
    return TamiyoState(**data)
