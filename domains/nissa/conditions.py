"""The alert conditions on the event stream, pure: `evolve(state, envelope)` folds an event into the state,
`decide(state, envelope)` names the alerts that event fires or resolves (as unsaved envelopes).

An alert instance is a rule and its labels (`training_latency_high/<run>`); its AlertFired and
AlertResolved events have ids derived from the instance and the position of the event that changed it, so
evaluating the log again appends nothing twice. The firing set follows only the alerts `decide` returned
(the caller evolves each); alert events read back from the log are skipped by the caller, since where they
land depends on when they were appended.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from domains.nissa import rules
from domains.tolaria.aggregate import GUARD
from leyline import decode_payload, new_envelope, pb

RUN_ENDS = frozenset({"RunCompleted", "RunFailed"})
ALERT_EVENTS = frozenset({"AlertFired", "AlertResolved"})
EVENT_TYPES = frozenset(
    {
        "EpochHookTimed",
        "EpochHookOverrun",
        "EpochCompleted",
        "IsolationViolationDetected",
        "CompileJobFailed",
        "CompileJobSucceeded",
        "RollbackRequested",
        "TelemetryReported",
    }
    | RUN_ENDS
    | ALERT_EVENTS
)


@dataclass(frozen=True)
class Firing:
    rule: str
    labels: Mapping[str, str]
    summary: str
    value: float


@dataclass(frozen=True)
class State:
    hooks: Mapping[str, tuple[float, ...]] = field(default_factory=dict)  # run -> latest hook totals (ms)
    budgets: Mapping[str, float] = field(default_factory=dict)  # run -> hook budget (ms)
    calm_epochs: Mapping[str, int] = field(default_factory=dict)  # run -> epochs since its last violation
    violations: Mapping[str, int] = field(default_factory=dict)  # run -> violations while firing
    steady_epochs: Mapping[str, int] = field(default_factory=dict)  # run -> epochs since its last explosion
    explosions: Mapping[str, int] = field(default_factory=dict)  # run -> rollbacks by the loss guard
    retries: tuple[int, ...] = ()  # occurred_at_ns of recent compile retries
    compiled_at: int = 0  # occurred_at_ns of the latest successful compile: the recovery evidence
    firing: Mapping[str, Firing] = field(default_factory=dict)  # instance name -> what fired it


def instance(rule: str, run_id: str = "") -> str:
    return f"{rule}/{run_id}" if run_id else rule


def quantile(values: tuple[float, ...], q: float) -> float:
    """The q-quantile by the nearest-rank method."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def hook_p95(state: State, run_id: str) -> float | None:
    hooks = state.hooks.get(run_id, ())
    return quantile(hooks, rules.HOOK_QUANTILE) if len(hooks) >= rules.HOOK_MIN_SAMPLES else None


def _with(mapping: Mapping[str, object], key: str, value: object | None) -> dict[str, object]:
    updated = dict(mapping)
    if value is None:
        updated.pop(key, None)
    else:
        updated[key] = value
    return updated


def _retries_within(retries: tuple[int, ...], now_ns: int) -> tuple[int, ...]:
    horizon = now_ns - int(rules.RETRY_WINDOW_S * 1e9)
    return tuple(at for at in retries if at > horizon)


def evolve(state: State, envelope: pb.EventEnvelope) -> State:
    """The state after one event (any type; those of no interest leave it unchanged)."""
    kind = envelope.event_type
    if kind not in EVENT_TYPES:
        return state
    payload = decode_payload(envelope)
    run_id = envelope.run_id
    if isinstance(payload, pb.EpochHookTimed):
        hooks = (*state.hooks.get(run_id, ()), payload.total_ms)[-rules.HOOK_WINDOW :]
        budget = payload.budget_ms or rules.DEFAULT_HOOK_BUDGET_MS
        return replace(state, hooks={**state.hooks, run_id: hooks}, budgets={**state.budgets, run_id: budget})
    if kind == "EpochCompleted":
        return replace(
            state,
            calm_epochs={**state.calm_epochs, run_id: state.calm_epochs.get(run_id, 0) + 1},
            steady_epochs={**state.steady_epochs, run_id: state.steady_epochs.get(run_id, 0) + 1},
        )
    if isinstance(payload, pb.RollbackRequested):
        if payload.requested_by != GUARD:
            return state
        return replace(
            state,
            steady_epochs={**state.steady_epochs, run_id: 0},
            explosions={**state.explosions, run_id: state.explosions.get(run_id, 0) + 1},
        )
    if isinstance(payload, pb.IsolationViolationDetected):
        count = state.violations.get(run_id, 0) + 1
        return replace(
            state,
            calm_epochs={**state.calm_epochs, run_id: 0},
            violations={**state.violations, run_id: count},
        )
    if isinstance(payload, pb.CompileJobFailed):
        if not payload.will_retry:
            return state
        retries = (*_retries_within(state.retries, envelope.occurred_at_ns), envelope.occurred_at_ns)
        return replace(state, retries=retries)
    if kind == "CompileJobSucceeded":
        return replace(state, compiled_at=max(state.compiled_at, envelope.occurred_at_ns))
    if kind in RUN_ENDS:
        return replace(
            state,
            hooks=_with(state.hooks, run_id, None),  # type: ignore[arg-type]
            budgets=_with(state.budgets, run_id, None),  # type: ignore[arg-type]
            calm_epochs=_with(state.calm_epochs, run_id, None),  # type: ignore[arg-type]
            violations=_with(state.violations, run_id, None),  # type: ignore[arg-type]
            steady_epochs=_with(state.steady_epochs, run_id, None),  # type: ignore[arg-type]
            explosions=_with(state.explosions, run_id, None),  # type: ignore[arg-type]
        )
    if isinstance(payload, pb.Alert):
        if kind == "AlertFired":
            labels = dict(payload.labels)
            firing = Firing(labels.get("alertname", payload.name), labels, payload.summary, payload.value)
            return replace(state, firing={**state.firing, payload.name: firing})
        return replace(state, firing=_with(state.firing, payload.name, None))  # type: ignore[arg-type]
    return state


def _conditions(state: State, envelope: pb.EventEnvelope) -> dict[str, Firing | None]:
    """For the alert instances this event concerns: what should be firing (None: nothing)."""
    kind, run_id = envelope.event_type, envelope.run_id
    wanted: dict[str, Firing | None] = {}
    if kind in ("EpochHookTimed", "EpochHookOverrun"):
        p95 = hook_p95(state, run_id)
        budget = state.budgets.get(run_id, rules.DEFAULT_HOOK_BUDGET_MS)
        wanted[instance(rules.TRAINING_LATENCY_HIGH, run_id)] = (
            Firing(
                rules.TRAINING_LATENCY_HIGH,
                {"run_id": run_id},
                f"run {run_id}: p95 of the last {len(state.hooks[run_id])} epoch hooks is {p95:.1f} ms, "
                f"over the {budget:g} ms budget",
                p95,
            )
            if p95 is not None and p95 > budget
            else None
        )
    if kind in ("EpochCompleted", "IsolationViolationDetected"):
        violations = state.violations.get(run_id, 0)
        calm = state.calm_epochs.get(run_id, 0) >= rules.ISOLATION_CLEAR_EPOCHS
        wanted[instance(rules.KASMINA_ISOLATION_VIOLATION, run_id)] = (
            Firing(
                rules.KASMINA_ISOLATION_VIOLATION,
                {"run_id": run_id},
                f"run {run_id}: {violations} gradient isolation violation(s) in a seed",
                float(violations),
            )
            if violations and not calm
            else None
        )
    if kind in ("EpochCompleted", "RollbackRequested"):
        explosions = state.explosions.get(run_id, 0)
        steady = state.steady_epochs.get(run_id, 0) >= rules.EXPLOSION_CLEAR_EPOCHS
        wanted[instance(rules.TRAINING_LOSS_EXPLOSION, run_id)] = (
            Firing(
                rules.TRAINING_LOSS_EXPLOSION,
                {"run_id": run_id},
                f"run {run_id}: the training loss exploded; the guard rolled back {explosions} time(s)",
                float(explosions),
            )
            if explosions and not steady
            else None
        )
    if kind in ("CompileJobFailed", "CompileJobSucceeded"):
        recent = _retries_within(state.retries, envelope.occurred_at_ns)
        # recovered: a compile succeeded after the latest retry (the window is only the fallback)
        recovered = bool(recent) and state.compiled_at >= recent[-1]
        wanted[rules.TEZZERET_COMPILE_RETRY_HIGH] = (
            Firing(
                rules.TEZZERET_COMPILE_RETRY_HIGH,
                {},
                f"{len(recent)} compile retries within {rules.RETRY_WINDOW_S} s, no compile succeeded since",
                float(len(recent)),
            )
            if len(recent) > rules.RETRY_THRESHOLD and not recovered
            else None
        )
    if kind == "TelemetryReported":
        packet = decode_payload(envelope)
        assert isinstance(packet, pb.TelemetryPacket)
        if packet.source == rules.MIRROR_TELEMETRY_SOURCE:
            lag = next((m.value for m in packet.metrics if m.name == rules.MIRROR_LAG_METRIC), 0.0)
            wanted[rules.MIRROR_REDIS_DOWN] = (
                Firing(
                    rules.MIRROR_REDIS_DOWN,
                    {},
                    f"the Redis mirror is down ({', '.join(e.message for e in packet.events)}); "
                    f"{lag:.0f} positions behind",
                    lag,
                )
                if packet.health != pb.HEALTH_STATUS_HEALTHY
                else None
            )
    if kind in RUN_ENDS:
        for name in (
            rules.TRAINING_LATENCY_HIGH,
            rules.KASMINA_ISOLATION_VIOLATION,
            rules.TRAINING_LOSS_EXPLOSION,
        ):
            wanted[instance(name, run_id)] = None
    return wanted


def _event_id(name: str, kind: str, position: int) -> str:
    return hashlib.sha256(f"nissa|{name}|{kind}|{position}".encode()).hexdigest()[:32]


def _alert(kind: str, name: str, firing: Firing, cause: pb.EventEnvelope) -> pb.EventEnvelope:
    payload = pb.Alert(
        name=name,
        severity=rules.SEVERITY[firing.rule],
        summary=firing.summary,
        labels={"alertname": firing.rule, **firing.labels},
        value=firing.value,
    )
    return new_envelope(
        kind,
        f"alert-{firing.rule}",
        payload,
        run_id=firing.labels.get("run_id", ""),
        epoch=cause.epoch if cause.HasField("epoch") else None,
        causation_id=cause.event_id,
        source="nissa",
        event_id=_event_id(name, kind, cause.global_position),
        occurred_at_ns=cause.occurred_at_ns,
    )


def decide(state: State, envelope: pb.EventEnvelope) -> list[pb.EventEnvelope]:
    """The AlertFired/AlertResolved events `envelope` causes, given the state after evolving it."""
    if envelope.event_type not in EVENT_TYPES or envelope.event_type in ALERT_EVENTS:
        return []
    changes = []
    for name, wanted in _conditions(state, envelope).items():
        current = state.firing.get(name)
        if wanted is not None and current is None:
            changes.append(_alert("AlertFired", name, wanted, envelope))
        elif wanted is None and current is not None:
            changes.append(_alert("AlertResolved", name, current, envelope))
    return changes
