"""The seed lifecycle of SPEC §7 as a pure event-sourced aggregate: `decide(state, command) -> events`,
`evolve(state, event) -> state`. No torch, no I/O, no clock: measured values come in on the commands.

The aggregate is one run's slots. Events are Leyline payload messages (SeedTransitioned, SeedGrafted,
IsolationViolationDetected, CommandRejected); the manager wraps them in envelopes on the stream
`seed-<run>.<slot>`.

The state is in `state.py`, the gates G0–G5 in `gates.py`, the commands in `commands.py`. Every
transition records the gates it evaluated with their measured values; evolve reads two of them back (the
seed loss when training starts and the host loss when blending starts) so a replay rebuilds them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from google.protobuf.message import Message

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
from domains.kasmina.gates import (
    STAGE_GATES,
    Gate,
    Measurements,
    Outcome,
    finite,
    gate_g5,
    without_extension,
)
from domains.kasmina.state import KasminaState, SlotState
from leyline import pb
from leyline.lifecycle import (
    ACTIVE_STAGES,
    ADMISSION_GATE,
    BLENDING,
    CULLED,
    DORMANT,
    EMBARGOED,
    FOSSILIZED,
    G1,
    GERMINATED,
    ISOLATION_GATE,
    NEXT_STAGE,
    QUARANTINE_STAGES,
    RESETTING,
    TERMINATED,
    TRAINING,
    TRANSITIONS,
    LifecycleConfig,
    stage_name,
)

# Rejections that say nothing about the command itself (anyone can send an unsigned envelope with any
# command id), so they never mark the command id as processed.
UNVERIFIED_CODES = frozenset(
    {"bad_signature", "replayed_nonce", "stale_timestamp", "unknown_key", "malformed", "wrong_run"}
)


class IllegalTransition(Exception):
    """An event that would move a slot along an edge SPEC §7 does not have: never applied."""


# ---------------------------------------------------------------- decide


def _transition(
    s: SlotState,
    to: int,
    epoch: int,
    reason: str,
    gates: Iterable[Gate] = (),
    command_id: str = "",
    blueprint_id: str | None = None,
) -> pb.SeedTransitioned:
    return pb.SeedTransitioned(
        slot=s.slot,
        seed_id=s.seed_id,
        from_stage=s.stage,  # type: ignore[arg-type]
        to_stage=to,  # type: ignore[arg-type]
        gates=[g.to_pb() for g in gates],
        command_id=command_id,
        reason=reason,
        epoch=epoch,
        blueprint_id=s.blueprint_id if blueprint_id is None else blueprint_id,
    )


def _cull(
    s: SlotState,
    epoch: int,
    reason: str,
    config: LifecycleConfig,
    gates: Iterable[Gate] = (),
    command_id: str = "",
) -> list[Message]:
    culled = _transition(s, CULLED, epoch, reason, gates, command_id)
    after = replace(s, stage=CULLED, stage_epoch=epoch)
    embargo = _transition(
        after, EMBARGOED, epoch, f"embargo for {config.embargo_epochs} epoch(s)", (), command_id
    )
    embargo.embargo_until_epoch = epoch + config.embargo_epochs
    return [culled, embargo]


def _rejected(s: SlotState, command_id: str, code: str, reason: str) -> pb.CommandRejected:
    return pb.CommandRejected(command_id=command_id, reason=reason, code=code, slot=s.slot, stage=s.stage)  # type: ignore[arg-type]


def decide(state: KasminaState, command: Command, config: LifecycleConfig) -> list[Message]:
    """The events a command yields; [] for a command id already processed (idempotency)."""
    if isinstance(command, Tick):
        return _decide_tick(state, command, config)
    s = state.slot(command.slot)
    if isinstance(command, RecordViolation):
        return _decide_violation(s, command, config)
    if isinstance(command, Scrubbed):
        if s.stage != RESETTING:
            return []
        gate = gate_g5(command.clean)
        if gate.outcome is Outcome.PASS:
            return [_transition(s, DORMANT, command.epoch, "slot scrubbed", [gate], blueprint_id="")]
        return [_transition(s, TERMINATED, command.epoch, f"reset failed: {gate.reason}", [gate])]
    if command.command_id in s.processed:
        return []
    if isinstance(command, Reject):
        return [_rejected(s, command.command_id, command.code, command.reason)]
    if isinstance(command, Germinate):
        return _decide_germinate(state, s, command, config)
    if isinstance(command, Cull):
        if s.stage not in ACTIVE_STAGES:
            return [
                _rejected(
                    s, command.command_id, "illegal_transition", f"cannot cull a {stage_name(s.stage)} slot"
                )
            ]
        return _cull(s, command.epoch, command.reason, config, command_id=command.command_id)
    if isinstance(command, Terminate):
        if TERMINATED not in TRANSITIONS[s.stage]:
            return [
                _rejected(
                    s,
                    command.command_id,
                    "illegal_transition",
                    f"cannot terminate a {stage_name(s.stage)} slot",
                )
            ]
        return [_transition(s, TERMINATED, command.epoch, command.reason, command_id=command.command_id)]
    return _decide_advance(state, s, command, config)


def germination_refusal(s: SlotState) -> tuple[str, str] | None:
    """Why a slot cannot take a new seed now, as (code, reason); None when it can."""
    if s.stage in QUARANTINE_STAGES:
        return "embargoed", f"slot {s.slot} is under embargo until epoch {s.embargo_until}"
    if s.stage != DORMANT:
        return "illegal_transition", f"cannot germinate a {stage_name(s.stage)} slot"
    return None


def precheck(state: KasminaState, slot: int, operation: int, measured: bool) -> tuple[str, str] | None:
    """The rules a verified seed command must pass before the shell fetches anything, pure: (code, reason)
    of its rejection, or None. `measured`: the slot has measurements from an epoch boundary (an ADVANCE
    needs them for its gate). decide() applies the same rules to the commands it receives."""
    s = state.slot(slot)
    if operation == pb.SEED_OP_GERMINATE:
        return germination_refusal(s)
    if operation == pb.SEED_OP_ADVANCE and s.stage in ACTIVE_STAGES and not measured:
        return "gate_not_met", "no measurements since germination; advance after an epoch boundary"
    return None


def _decide_germinate(
    state: KasminaState, s: SlotState, c: Germinate, config: LifecycleConfig
) -> list[Message]:
    refusal = germination_refusal(s)
    if refusal is not None:
        return [_rejected(s, c.command_id, *refusal)]
    if c.g0.outcome is not Outcome.PASS:
        return [_rejected(s, c.command_id, "gate_failed", f"G0: {c.g0.reason}")]
    seed_id = state.last_seed_id + 1
    seeded = replace(s, seed_id=seed_id)
    transition = _transition(
        seeded, GERMINATED, c.epoch, "germinate command", [c.g0], c.command_id, blueprint_id=c.blueprint_id
    )
    grafted = pb.SeedGrafted(
        slot=s.slot,
        seed_id=seed_id,
        blueprint_id=c.blueprint_id,
        artifact_hash=c.artifact_hash,
        parameters=c.parameters,
        latency_ms=c.latency_ms,
        command_id=c.command_id,
        alpha_ramp_epochs=c.alpha_ramp_epochs or config.alpha_ramp_epochs,
    )
    return [transition, grafted]


def _decide_advance(state: KasminaState, s: SlotState, c: Advance, config: LifecycleConfig) -> list[Message]:
    if s.stage == GERMINATED:
        if state.count(TRAINING) >= config.max_training_seeds:
            return [_rejected(s, c.command_id, "gate_not_met", "the slot scheduler has no training capacity")]
        return _admit(s, c.epoch, c.measurements, config, c.command_id)
    gate_fn = STAGE_GATES.get(s.stage)
    if gate_fn is None:
        return [
            _rejected(s, c.command_id, "illegal_transition", f"cannot advance a {stage_name(s.stage)} slot")
        ]
    gate = gate_fn(s, c.epoch, c.measurements, config)
    if gate.outcome is Outcome.WAIT:
        return [_rejected(s, c.command_id, "gate_not_met", f"{gate.name}: {gate.reason}")]
    if gate.outcome is Outcome.FAIL:
        return _cull(s, c.epoch, f"{gate.name} failed: {gate.reason}", config, [gate], c.command_id)
    return [_transition(s, NEXT_STAGE[s.stage], c.epoch, f"{gate.name} passed", [gate], c.command_id)]


def _admit(
    s: SlotState, epoch: int, m: Measurements, config: LifecycleConfig, command_id: str = ""
) -> list[Message]:
    gate = Gate(
        ADMISSION_GATE,
        Outcome.PASS if finite(m.seed_loss) and not m.nonfinite else Outcome.FAIL,
        "admitted by the slot scheduler",
        {"seed_loss": m.seed_loss, "host_loss": m.host_loss, "nonfinite": float(m.nonfinite)},
    )
    if gate.outcome is Outcome.FAIL:
        return _cull(s, epoch, "non-finite seed loss at admission", config, [gate], command_id)
    return [_transition(s, TRAINING, epoch, "admitted by the slot scheduler", [gate], command_id)]


def _decide_tick(state: KasminaState, tick: Tick, config: LifecycleConfig) -> list[Message]:
    events: list[Message] = []
    training = state.count(TRAINING)
    gate_config = without_extension(config) if tick.final else config
    for s in state.slots:
        m = tick.measurements.get(s.slot, Measurements())
        if s.stage in STAGE_GATES:
            gate = STAGE_GATES[s.stage](s, tick.epoch, m, gate_config)
            if gate.outcome is Outcome.PASS:
                events.append(_transition(s, NEXT_STAGE[s.stage], tick.epoch, f"{gate.name} passed", [gate]))
            elif gate.outcome is Outcome.FAIL:
                events.extend(_cull(s, tick.epoch, f"{gate.name} failed: {gate.reason}", config, [gate]))
            if s.stage == TRAINING and gate.outcome is not Outcome.WAIT:
                training -= 1
        elif s.stage == EMBARGOED and tick.epoch >= s.embargo_until:
            events.append(_transition(s, RESETTING, tick.epoch, "embargo elapsed"))
    # Admission after the gates, so a seed leaving TRAINING frees its place at the same boundary;
    # germinated seeds are admitted oldest first.
    for s in sorted((s for s in state.slots if s.stage == GERMINATED), key=lambda s: s.seed_id):
        if training >= config.max_training_seeds:
            break
        admitted = _admit(s, tick.epoch, tick.measurements.get(s.slot, Measurements()), config)
        training += 1 if admitted[0].to_stage == TRAINING else 0  # type: ignore[attr-defined]
        events.extend(admitted)
    return events


def _decide_violation(s: SlotState, c: RecordViolation, config: LifecycleConfig) -> list[Message]:
    if s.stage not in ACTIVE_STAGES:
        return []
    count = s.violations + 1
    event = pb.IsolationViolationDetected(
        slot=s.slot,
        seed_id=s.seed_id,
        violation_count=count,
        parameter=c.parameter,
        gradient_norm=c.gradient_norm,
        epoch=c.epoch,
    )
    if count < config.max_isolation_violations:
        return [event]
    gate = Gate(ISOLATION_GATE, Outcome.FAIL, f"{count} isolation violations", {"violations": float(count)})
    return [
        event,
        *_cull(replace(s, violations=count), c.epoch, f"{count} isolation violations", config, [gate]),
    ]


# ---------------------------------------------------------------- evolve


def _measured(event: pb.SeedTransitioned, gate: str, key: str) -> float:
    for result in event.gates:
        if result.gate == gate and key in result.measured:
            return float(result.measured[key])
    return math.nan


def evolve(state: KasminaState, event: Message) -> KasminaState:
    """Apply one event; raises IllegalTransition for an edge SPEC §7 does not have. Everything the fold
    needs rides on the event (the ramp on SeedGrafted, the embargo's end on the EMBARGOED transition), so a
    replay never depends on the configuration of the process that replays."""
    if isinstance(event, pb.CommandRejected):
        if event.code in UNVERIFIED_CODES or not state.has_slot(event.slot):
            return state
        s = state.slot(event.slot)
        return state.with_slot(replace(s, processed=s.processed | {event.command_id}))
    if isinstance(event, pb.SeedGrafted):
        s = state.slot(event.slot)
        return state.with_slot(
            replace(s, artifact_hash=event.artifact_hash, alpha_ramp_epochs=event.alpha_ramp_epochs)
        )
    if isinstance(event, pb.IsolationViolationDetected):
        s = state.slot(event.slot)
        return state.with_slot(replace(s, violations=event.violation_count))
    if not isinstance(event, pb.SeedTransitioned):
        raise TypeError(f"Kasmina's aggregate does not take {type(event).__name__}")
    s = state.slot(event.slot)
    if event.from_stage != s.stage or event.to_stage not in TRANSITIONS[s.stage]:
        raise IllegalTransition(
            f"slot {s.slot}: {stage_name(event.from_stage)} → {stage_name(event.to_stage)} "
            f"while the slot is {stage_name(s.stage)}"
        )
    processed = s.processed | {event.command_id} if event.command_id else s.processed
    to = event.to_stage
    if to == DORMANT:
        return state.with_slot(SlotState(slot=s.slot, processed=processed))
    changes: dict[str, Any] = {"stage": to, "stage_epoch": event.epoch, "processed": processed}
    last_seed_id = state.last_seed_id
    if to == GERMINATED:
        changes.update(
            seed_id=event.seed_id,
            blueprint_id=event.blueprint_id,
            origin_command=event.command_id,
            germinated_epoch=event.epoch,
        )
        last_seed_id = max(last_seed_id, event.seed_id)
    elif to == TRAINING:
        gap = _measured(event, ADMISSION_GATE, "seed_loss") - _measured(event, ADMISSION_GATE, "host_loss")
        changes["training_reference_gap"] = gap if math.isfinite(gap) else None
    elif to == BLENDING:
        loss = _measured(event, G1, "host_loss")
        changes["blending_reference_loss"] = loss if math.isfinite(loss) else None
    elif to == EMBARGOED:
        changes["embargo_until"] = event.embargo_until_epoch
    if to in (FOSSILIZED, CULLED, TERMINATED):
        changes["outcome_reason"] = event.reason
    return state.with_slot(replace(s, **changes), last_seed_id)


def replay(initial: KasminaState, events: Iterable[Message]) -> KasminaState:
    state = initial
    for event in events:
        state = evolve(state, event)
    return state
