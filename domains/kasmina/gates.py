"""The lifecycle's gates (SPEC §7): what the trainer measured for a slot, and the pure gate functions G0–G5
that judge it. Outcomes are three-valued: PASS moves on, WAIT stays (a window has not elapsed yet), FAIL
culls. Every transition records the gates it evaluated with their measured values."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from domains.kasmina.state import SlotState
from leyline import pb
from leyline.lifecycle import (
    BLENDING,
    FOSSILIZED,
    G0,
    G1,
    G2,
    G3,
    G4,
    G5,
    PROBATIONARY,
    SHADOWING,
    TRAINING,
    LifecycleConfig,
)


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


def finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def gate_g0(artifact_verified: bool, shape_ok: bool, detail: str = "") -> Gate:
    """The source verified the artifact (and refused it if quarantined outside a fault drill); the module
    maps the slot's shape to itself."""
    measured = {"artifact_verified": float(artifact_verified), "shape_ok": float(shape_ok)}
    if not artifact_verified:
        return Gate(G0, Outcome.FAIL, f"artifact not verified: {detail}", measured)
    if not shape_ok:
        return Gate(G0, Outcome.FAIL, f"shapes incompatible: {detail}", measured)
    return Gate(G0, Outcome.PASS, "artifact verified, shapes compatible", measured)


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
    if m.nonfinite or not finite(m.seed_loss, m.host_loss, m.grad_norm):
        return Gate(G1, Outcome.FAIL, "non-finite seed loss, output or gradient", measured)
    if m.grad_norm > config.max_grad_norm:
        return Gate(G1, Outcome.FAIL, f"gradient norm {m.grad_norm:.3g} > {config.max_grad_norm:g}", measured)
    if trained < config.min_training_epochs:
        return Gate(G1, Outcome.WAIT, f"trained {trained} of {config.min_training_epochs} epochs", measured)
    reference = state.training_reference_gap
    improving = reference is None or gap < reference
    if improving:
        return Gate(G1, Outcome.PASS, "trained, loss improving, finite, gradient in bounds", measured)
    if trained >= config.max_training_epochs:
        return Gate(G1, Outcome.FAIL, f"seed loss not improving after {trained} epochs", measured)
    return Gate(G1, Outcome.WAIT, "seed loss not improving yet", measured)


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
        return Gate(G2, Outcome.FAIL, "non-finite host loss or seed output", measured)
    if state.violations:
        return Gate(G2, Outcome.FAIL, f"{state.violations} isolation violation(s)", measured)
    if reference is not None and m.host_loss > reference * (1 + config.host_loss_tolerance) + 1e-12:
        return Gate(G2, Outcome.FAIL, f"host loss degraded {reference:.4g} → {m.host_loss:.4g}", measured)
    if blended < state.alpha_ramp_epochs:
        return Gate(
            G2, Outcome.WAIT, f"alpha ramp at {blended} of {state.alpha_ramp_epochs} epochs", measured
        )
    return Gate(G2, Outcome.PASS, "ramp done, no violation, host loss within bound", measured)


def gate_g3(state: SlotState, epoch: int, m: Measurements, config: LifecycleConfig) -> Gate:
    measured = {
        "loss_alpha0": m.loss_alpha0,
        "loss_alpha1": m.loss_alpha1,
        "shape_ok": float(m.shape_ok),
        "nonfinite": float(m.nonfinite),
    }
    if epoch - state.stage_epoch < 1:
        return Gate(G3, Outcome.WAIT, "probes run at the end of a shadowing epoch", measured)
    if not m.shape_ok:
        return Gate(G3, Outcome.FAIL, "seed output shape does not match the slot", measured)
    if m.nonfinite or not finite(m.loss_alpha0, m.loss_alpha1):
        return Gate(G3, Outcome.FAIL, "non-finite probe", measured)
    if m.loss_alpha1 > m.loss_alpha0 * (1 + config.shadow_tolerance) + 1e-12:
        return Gate(G3, Outcome.FAIL, "counterfactual: validation loss worse with the seed", measured)
    return Gate(G3, Outcome.PASS, "interface probes passed", measured)


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
        return Gate(G4, Outcome.FAIL, "non-finite seed output", measured)
    if watched < config.probation_epochs:
        return Gate(G4, Outcome.WAIT, f"probation {watched} of {config.probation_epochs} epochs", measured)
    if not math.isfinite(contribution):
        return Gate(G4, Outcome.FAIL, "contribution not measurable (non-finite)", measured)
    if contribution < config.min_contribution:
        return Gate(
            G4, Outcome.FAIL, f"contribution {contribution:.4g} < {config.min_contribution:g}", measured
        )
    return Gate(G4, Outcome.PASS, f"contribution {contribution:.4g} >= {config.min_contribution:g}", measured)


def gate_g5(clean: Mapping[str, bool]) -> Gate:
    dirty = sorted(name for name, ok in clean.items() if not ok)
    measured = {name: float(ok) for name, ok in clean.items()}
    if dirty:
        return Gate(G5, Outcome.FAIL, f"not scrubbed: {', '.join(dirty)}", measured)
    return Gate(G5, Outcome.PASS, "module, optimizer group, buffers and counters scrubbed", measured)


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
