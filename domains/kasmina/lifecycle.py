"""The seed lifecycle of SPEC §7 as a pure event-sourced aggregate: `decide(state, command) -> events`,
`evolve(state, event) -> state`. No torch, no I/O, no clock: measured values come in on the commands.

The aggregate is one run's slots. Events are Leyline payload messages (SeedTransitioned, SeedGrafted,
IsolationViolationDetected, CommandRejected); the manager wraps them in envelopes on the stream
`seed-<run>.<slot>`.

Gate outcomes are three-valued: PASS moves on, WAIT stays (a window has not elapsed yet), FAIL culls.
Every transition records the gates it evaluated with their measured values; evolve reads two of them back
(the seed loss when training starts and the host loss when blending starts) so a replay rebuilds them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from google.protobuf.message import Message

from leyline import pb
from leyline.lifecycle import (
    ACTIVE_STAGES,
    BLENDING,
    CULLED,
    DORMANT,
    EMBARGOED,
    FOSSILIZED,
    GERMINATED,
    NEXT_STAGE,
    PROBATIONARY,
    RESETTING,
    SHADOWING,
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


@dataclass(frozen=True)
class SlotState:
    slot: int
    stage: int = DORMANT
    seed_id: int = 0
    blueprint_id: str = ""
    artifact_hash: str = ""
    origin_command: str = ""  # the command that germinated the current seed
    germinated_epoch: int = 0
    alpha_ramp_epochs: int = 0
    stage_epoch: int = 0  # the epoch boundary at which the current stage was entered
    violations: int = 0
    training_reference_gap: float | None = None  # seed loss − host loss when TRAINING started (G1)
    blending_reference_loss: float | None = None  # host validation loss when BLENDING started (G2)
    embargo_until: int = 0
    # The ledger of processed command ids outlives the seed: idempotency survives a reset.
    processed: frozenset[str] = frozenset()

    def seed_view(self) -> SlotState:
        """Everything but the command ledger: equal to a never-used slot's after RESETTING → DORMANT."""
        return replace(self, processed=frozenset())


@dataclass(frozen=True)
class KasminaState:
    slots: tuple[SlotState, ...]
    last_seed_id: int = 0

    @classmethod
    def initial(cls, slots: Iterable[int]) -> KasminaState:
        return cls(tuple(SlotState(slot=s) for s in sorted(slots)))

    def slot(self, slot: int) -> SlotState:
        for state in self.slots:
            if state.slot == slot:
                return state
        raise KeyError(slot)

    def has_slot(self, slot: int) -> bool:
        return any(state.slot == slot for state in self.slots)

    def with_slot(self, new: SlotState, last_seed_id: int | None = None) -> KasminaState:
        slots = tuple(new if s.slot == new.slot else s for s in self.slots)
        return KasminaState(slots, self.last_seed_id if last_seed_id is None else last_seed_id)

    def count(self, stage: int) -> int:
        return sum(1 for s in self.slots if s.stage == stage)


# ---------------------------------------------------------------- measurements and gates


class Outcome(Enum):
    PASS = "pass"
    WAIT = "wait"
    FAIL = "fail"


@dataclass(frozen=True)
class Measurements:
    """What the trainer measured for one slot at an epoch boundary (NaN = not measured)."""

    host_loss: float = math.nan  # validation loss of the host as it runs (seeds at their alphas)
    seed_loss: float = math.nan  # validation loss with this seed fully in (alpha 1)
    loss_alpha0: float = math.nan  # counterfactual: this seed out
    loss_alpha1: float = math.nan  # counterfactual: this seed fully in
    grad_norm: float = 0.0  # RMS per-step gradient norm of the seed's parameters
    nonfinite: int = 0  # non-finite seed outputs or gradients seen during the epoch
    shape_ok: bool = True


@dataclass(frozen=True)
class Gate:
    name: str
    outcome: Outcome
    reason: str
    measured: Mapping[str, float] = field(default_factory=dict)

    def to_pb(self) -> pb.GateResult:
        return pb.GateResult(
            gate=self.name,
            passed=self.outcome is Outcome.PASS,
            reason=self.reason,
            measured={k: float(v) for k, v in self.measured.items()},
        )


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def gate_g0(artifact_verified: bool, shape_ok: bool, detail: str = "") -> Gate:
    """The source verified the artifact (and refused it if quarantined outside a fault drill); the module
    maps the slot's shape to itself."""
    measured = {"artifact_verified": float(artifact_verified), "shape_ok": float(shape_ok)}
    if not artifact_verified:
        return Gate("G0", Outcome.FAIL, f"artifact not verified: {detail}", measured)
    if not shape_ok:
        return Gate("G0", Outcome.FAIL, f"shapes incompatible: {detail}", measured)
    return Gate("G0", Outcome.PASS, "artifact verified, shapes compatible", measured)


def gate_g1(state: SlotState, epoch: int, m: Measurements, config: LifecycleConfig) -> Gate:
    """Loss improving = the seed's gap (its loss at alpha 1 minus the host's) shrank since admission: the
    host keeps training meanwhile, so the seed's own loss alone says little."""
    trained = epoch - state.stage_epoch
    gap = m.seed_loss - m.host_loss
    measured = {
        "epochs": float(trained),
        "seed_loss": m.seed_loss,
        "host_loss": m.host_loss,
        "gap": gap,
        "reference_gap": _or_nan(state.training_reference_gap),
        "grad_norm": m.grad_norm,
        "nonfinite": float(m.nonfinite),
    }
    if m.nonfinite or not _finite(m.seed_loss, m.host_loss, m.grad_norm):
        return Gate("G1", Outcome.FAIL, "non-finite seed loss, output or gradient", measured)
    if m.grad_norm > config.max_grad_norm:
        return Gate(
            "G1", Outcome.FAIL, f"gradient norm {m.grad_norm:.3g} > {config.max_grad_norm:g}", measured
        )
    if trained < config.min_training_epochs:
        return Gate("G1", Outcome.WAIT, f"trained {trained} of {config.min_training_epochs} epochs", measured)
    reference = state.training_reference_gap
    improving = reference is None or gap < reference
    if improving:
        return Gate("G1", Outcome.PASS, "trained, loss improving, finite, gradient in bounds", measured)
    if trained >= config.max_training_epochs:
        return Gate("G1", Outcome.FAIL, f"seed loss not improving after {trained} epochs", measured)
    return Gate("G1", Outcome.WAIT, "seed loss not improving yet", measured)


def gate_g2(state: SlotState, epoch: int, m: Measurements, config: LifecycleConfig) -> Gate:
    blended = epoch - state.stage_epoch
    reference = state.blending_reference_loss
    measured = {
        "epochs": float(blended),
        "ramp_epochs": float(state.alpha_ramp_epochs),
        "host_loss": m.host_loss,
        "reference_loss": _or_nan(reference),
        "violations": float(state.violations),
        "nonfinite": float(m.nonfinite),
    }
    if m.nonfinite or not math.isfinite(m.host_loss):
        return Gate("G2", Outcome.FAIL, "non-finite host loss or seed output", measured)
    if state.violations:
        return Gate("G2", Outcome.FAIL, f"{state.violations} isolation violation(s)", measured)
    if reference is not None and m.host_loss > reference * (1 + config.host_loss_tolerance) + 1e-12:
        return Gate("G2", Outcome.FAIL, f"host loss degraded {reference:.4g} → {m.host_loss:.4g}", measured)
    if blended < state.alpha_ramp_epochs:
        return Gate(
            "G2", Outcome.WAIT, f"alpha ramp at {blended} of {state.alpha_ramp_epochs} epochs", measured
        )
    return Gate("G2", Outcome.PASS, "ramp done, no violation, host loss within bound", measured)


def gate_g3(state: SlotState, epoch: int, m: Measurements, config: LifecycleConfig) -> Gate:
    measured = {
        "loss_alpha0": m.loss_alpha0,
        "loss_alpha1": m.loss_alpha1,
        "shape_ok": float(m.shape_ok),
        "nonfinite": float(m.nonfinite),
    }
    if epoch - state.stage_epoch < 1:
        return Gate("G3", Outcome.WAIT, "probes run at the end of a shadowing epoch", measured)
    if not m.shape_ok:
        return Gate("G3", Outcome.FAIL, "seed output shape does not match the slot", measured)
    if m.nonfinite or not _finite(m.loss_alpha0, m.loss_alpha1):
        return Gate("G3", Outcome.FAIL, "non-finite probe", measured)
    if m.loss_alpha1 > m.loss_alpha0 * (1 + config.shadow_tolerance) + 1e-12:
        return Gate("G3", Outcome.FAIL, "counterfactual: validation loss worse with the seed", measured)
    return Gate("G3", Outcome.PASS, "interface probes passed", measured)


def gate_g4(state: SlotState, epoch: int, m: Measurements, config: LifecycleConfig) -> Gate:
    watched = epoch - state.stage_epoch
    contribution = m.loss_alpha0 - m.loss_alpha1
    measured = {
        "epochs": float(watched),
        "loss_alpha0": m.loss_alpha0,
        "loss_alpha1": m.loss_alpha1,
        "contribution": contribution,
        "nonfinite": float(m.nonfinite),
    }
    if m.nonfinite:
        return Gate("G4", Outcome.FAIL, "non-finite seed output", measured)
    if watched < config.probation_epochs:
        return Gate("G4", Outcome.WAIT, f"probation {watched} of {config.probation_epochs} epochs", measured)
    if not math.isfinite(contribution):
        return Gate("G4", Outcome.FAIL, "contribution not measurable (non-finite)", measured)
    if contribution < config.min_contribution:
        return Gate(
            "G4", Outcome.FAIL, f"contribution {contribution:.4g} < {config.min_contribution:g}", measured
        )
    return Gate(
        "G4", Outcome.PASS, f"contribution {contribution:.4g} >= {config.min_contribution:g}", measured
    )


def gate_g5(clean: Mapping[str, bool]) -> Gate:
    dirty = sorted(name for name, ok in clean.items() if not ok)
    measured = {name: float(ok) for name, ok in clean.items()}
    if dirty:
        return Gate("G5", Outcome.FAIL, f"not scrubbed: {', '.join(dirty)}", measured)
    return Gate("G5", Outcome.PASS, "module, optimizer group, buffers and counters scrubbed", measured)


GateFunction = Callable[[SlotState, int, Measurements, LifecycleConfig], Gate]
STAGE_GATES: dict[int, GateFunction] = {
    TRAINING: gate_g1,
    BLENDING: gate_g2,
    SHADOWING: gate_g3,
    PROBATIONARY: gate_g4,
}


def alpha_at(state: SlotState, epoch: int) -> float:
    """Blend weight during the epoch after boundary `epoch` (0 before BLENDING, 1 once merged)."""
    if state.stage == BLENDING:
        return min(1.0, (epoch - state.stage_epoch + 1) / max(1, state.alpha_ramp_epochs))
    if state.stage in (SHADOWING, PROBATIONARY, FOSSILIZED):
        return 1.0
    return 0.0


# ---------------------------------------------------------------- commands


@dataclass(frozen=True)
class Germinate:
    command_id: str
    slot: int
    epoch: int
    blueprint_id: str
    artifact_hash: str
    g0: Gate
    alpha_ramp_epochs: int = 0  # 0: the configured default
    parameters: int = 0  # parameter count of the module
    latency_ms: float = 0.0


@dataclass(frozen=True)
class Advance:
    command_id: str
    slot: int
    epoch: int
    measurements: Measurements


@dataclass(frozen=True)
class Cull:
    command_id: str
    slot: int
    epoch: int
    reason: str = "cull command"


@dataclass(frozen=True)
class Terminate:
    command_id: str
    slot: int
    epoch: int
    reason: str = "terminated"


@dataclass(frozen=True)
class Reject:
    """A command refused before it reached the lifecycle (signature, deadline, unsupported)."""

    command_id: str
    slot: int
    code: str
    reason: str


@dataclass(frozen=True)
class Tick:
    """An epoch boundary: admission, gates, alpha ramp and embargo countdown for every slot."""

    epoch: int
    measurements: Mapping[int, Measurements]


@dataclass(frozen=True)
class RecordViolation:
    slot: int
    epoch: int
    parameter: str
    gradient_norm: float


@dataclass(frozen=True)
class Scrubbed:
    """The manager scrubbed a RESETTING slot; `clean` names each check (G5)."""

    slot: int
    epoch: int
    clean: Mapping[str, bool]


Command = Germinate | Advance | Cull | Terminate | Reject | Tick | RecordViolation | Scrubbed


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


def _decide_germinate(
    state: KasminaState, s: SlotState, c: Germinate, config: LifecycleConfig
) -> list[Message]:
    if s.stage in (CULLED, EMBARGOED, RESETTING):
        return [
            _rejected(
                s, c.command_id, "embargoed", f"slot {s.slot} is under embargo until epoch {s.embargo_until}"
            )
        ]
    if s.stage != DORMANT:
        return [
            _rejected(s, c.command_id, "illegal_transition", f"cannot germinate a {stage_name(s.stage)} slot")
        ]
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
        "admission",
        Outcome.PASS if _finite(m.seed_loss) and not m.nonfinite else Outcome.FAIL,
        "admitted by the slot scheduler",
        {"seed_loss": m.seed_loss, "host_loss": m.host_loss, "nonfinite": float(m.nonfinite)},
    )
    if gate.outcome is Outcome.FAIL:
        return _cull(s, epoch, "non-finite seed loss at admission", config, [gate], command_id)
    return [_transition(s, TRAINING, epoch, "admitted by the slot scheduler", [gate], command_id)]


def _decide_tick(state: KasminaState, tick: Tick, config: LifecycleConfig) -> list[Message]:
    events: list[Message] = []
    training = state.count(TRAINING)
    for s in state.slots:
        m = tick.measurements.get(s.slot, Measurements())
        if s.stage in STAGE_GATES:
            gate = STAGE_GATES[s.stage](s, tick.epoch, m, config)
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
    gate = Gate("isolation", Outcome.FAIL, f"{count} isolation violations", {"violations": float(count)})
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
        gap = _measured(event, "admission", "seed_loss") - _measured(event, "admission", "host_loss")
        changes["training_reference_gap"] = gap if math.isfinite(gap) else None
    elif to == BLENDING:
        loss = _measured(event, "G1", "host_loss")
        changes["blending_reference_loss"] = loss if math.isfinite(loss) else None
    elif to == EMBARGOED:
        changes["embargo_until"] = event.embargo_until_epoch
    return state.with_slot(replace(s, **changes), last_seed_id)


def replay(initial: KasminaState, events: Iterable[Message]) -> KasminaState:
    state = initial
    for event in events:
        state = evolve(state, event)
    return state
