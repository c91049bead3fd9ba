"""The lifecycle's gates (SPEC §7): what the trainer measured for a slot, and the pure gate functions G0–G5
that judge it. Outcomes are three-valued: PASS moves on, WAIT stays (a window has not elapsed yet), FAIL
culls. Every transition records the gates it evaluated with their measured values; a gate that compares
losses with and without the seed decides on a paired per-example test (evidence.py), never on the
difference of two means over a small validation set."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum

from domains.kasmina.evidence import PairedEvidence, paired
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
    # Per validation example while BLENDING: loss with the seed as blended − loss with the seed out
    # (G2's paired evidence); () = not measured.
    blend_deltas: tuple[float, ...] = ()
    # While TRAINING: the lowest gap (seed loss at alpha 1 − host loss) measured since admission (G1).
    best_gap: float = math.nan
    # Per validation example in SHADOWING and after probation: loss with the seed fully in (alpha 1) −
    # loss with the seed out (alpha 0), the paired evidence of G3 and G4; () = not measured.
    seed_deltas: tuple[float, ...] = ()


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


def measured_contribution(m: Measurements) -> float:
    """Validation loss without the seed minus with it fully in, as last measured (NaN: not measured): the
    alpha 0 vs 1 probes from BLENDING on; while TRAINING the host as it runs is the seed-out model."""
    if finite(m.loss_alpha0, m.loss_alpha1):
        return m.loss_alpha0 - m.loss_alpha1
    return m.host_loss - m.seed_loss


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
    """Loss improving = the seed's gap (its loss at alpha 1 minus the host's) fell below its gap at
    admission at some epoch since (the host keeps training meanwhile, so the seed's own loss alone says
    little). The lowest gap counts, not the last: a fresh graft that lowered the loss and then drifted
    back toward the host's output has shown it can learn, and whether it helps is for G2–G4 to judge."""
    trained = epoch - state.stage_epoch
    gap = m.seed_loss - m.host_loss
    best = min(gap, m.best_gap) if math.isfinite(m.best_gap) else gap
    measured = {
        "epochs": float(trained),
        "seed_loss": m.seed_loss,
        "host_loss": m.host_loss,
        "gap": gap,
        "best_gap": best,
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
    if reference is None or best < reference:
        return Gate(G1, Outcome.PASS, "trained, loss improved, finite, gradient in bounds", measured)
    if trained >= config.max_training_epochs:
        return Gate(G1, Outcome.FAIL, f"seed loss not improving after {trained} epochs", measured)
    return Gate(G1, Outcome.WAIT, "seed loss not improving yet", measured)


def gate_g2(state: SlotState, epoch: int, m: Measurements, config: LifecycleConfig) -> Gate:
    """The host loss must not degrade while the seed blends in: per validation example, the loss with the
    seed as blended minus the loss with the seed out. The gate fails only when the lower confidence bound
    of the mean difference exceeds the tolerance (host_loss_tolerance × the loss without the seed): a
    seed whose effect is within noise is not culled for it. Without paired losses it fails closed."""
    blended = epoch - state.stage_epoch
    evidence = paired(m.blend_deltas)
    threshold = config.host_loss_tolerance * m.loss_alpha0
    measured = {
        "epochs": float(blended),
        "ramp_epochs": float(state.alpha_ramp_epochs),
        "host_loss": m.host_loss,
        "loss_alpha0": m.loss_alpha0,
        "reference_loss": _or_nan(state.blending_reference_loss),
        "threshold": threshold,
        **evidence.measured("delta"),
        "violations": float(state.violations),
        "nonfinite": float(m.nonfinite),
    }
    if m.nonfinite or not math.isfinite(m.host_loss):
        return Gate(G2, Outcome.FAIL, "non-finite host loss or seed output", measured)
    if state.violations:
        return Gate(G2, Outcome.FAIL, f"{state.violations} isolation violation(s)", measured)
    refusal = _degradation(evidence, threshold, "host loss")
    if refusal:
        return Gate(G2, Outcome.FAIL, refusal, measured)
    if blended < state.alpha_ramp_epochs:
        return Gate(
            G2, Outcome.WAIT, f"alpha ramp at {blended} of {state.alpha_ramp_epochs} epochs", measured
        )
    return Gate(
        G2,
        Outcome.PASS,
        f"ramp done, no violation, host loss change {evidence.mean:+.4g} not above {threshold:.4g} "
        f"beyond noise (n={evidence.n})",
        measured,
    )


def _degradation(evidence: PairedEvidence, threshold: float, what: str) -> str:
    """Why paired evidence of a loss increase (with the seed − without) fails a gate, or "" when it does
    not: evidence missing (fail closed), or the lower confidence bound of the increase above the threshold.
    The one rule G2 and G3 share: a seed whose harm is within noise is not culled for it."""
    if evidence.n < 2 or not finite(evidence.mean, evidence.std_error, threshold):
        return f"{what} not measured per example (paired evidence missing)"
    if evidence.lower > threshold:
        return (
            f"{what} degraded by {evidence.mean:.4g} per example (lower bound {evidence.lower:.4g} > "
            f"{threshold:.4g}, n={evidence.n})"
        )
    return ""


def gate_g3(state: SlotState, epoch: int, m: Measurements, config: LifecycleConfig) -> Gate:
    """Interface probes (shape, finiteness) and the counterfactual alpha 1 vs 0 on validation, per example:
    the seed fails when the lower confidence bound of its loss increase exceeds shadow_tolerance × the
    loss without it (the rule G2 applies while blending)."""
    evidence = paired(m.seed_deltas)
    threshold = config.shadow_tolerance * m.loss_alpha0
    measured = {
        "loss_alpha0": m.loss_alpha0,
        "loss_alpha1": m.loss_alpha1,
        "threshold": threshold,
        **evidence.measured("delta"),
        "shape_ok": float(m.shape_ok),
        "nonfinite": float(m.nonfinite),
    }
    if epoch - state.stage_epoch < 1:
        return Gate(G3, Outcome.WAIT, "probes run at the end of a shadowing epoch", measured)
    if not m.shape_ok:
        return Gate(G3, Outcome.FAIL, "seed output shape does not match the slot", measured)
    if m.nonfinite or not finite(m.loss_alpha0, m.loss_alpha1):
        return Gate(G3, Outcome.FAIL, "non-finite probe", measured)
    refusal = _degradation(evidence, threshold, "counterfactual: validation loss with the seed")
    if refusal:
        return Gate(G3, Outcome.FAIL, refusal, measured)
    return Gate(
        G3,
        Outcome.PASS,
        f"interface probes passed; loss change with the seed {evidence.mean:+.4g} not above "
        f"{threshold:.4g} beyond noise (n={evidence.n})",
        measured,
    )


def gate_g4(state: SlotState, epoch: int, m: Measurements, config: LifecycleConfig) -> Gate:
    """After the probation window, per validation example, the seed's contribution (loss without it − loss
    with it). The burden of proof is on the seed: it passes only when the lower 95 % bound of the mean
    contribution is above min_contribution (shown to help) and fails at once when the upper bound is below
    it (shown not to). Fossilization is permanent: a seed whose contribution is within noise would have its
    parameters paid for by every later step and every saved model, for no shown gain. So while the
    evidence is undecided the seed WAITs, re-measured at every boundary, up to probation_extension_epochs
    more boundaries (fewer when the run ends first: see without_extension), and then fails for showing no
    contribution. A seed whose lower bound is above min_contribution is never culled by this gate. G2 and
    G3 keep the opposite burden (culling only a seed shown to harm): they judge a seed that is still
    learning, G4 the graft that would stay. Without paired losses it fails closed."""
    watched = epoch - state.stage_epoch
    contribution = paired([-d for d in m.seed_deltas])
    deadline = config.probation_deadline_epochs
    measured = {
        "epochs": float(watched),
        "deadline_epochs": float(deadline),
        "loss_alpha0": m.loss_alpha0,
        "loss_alpha1": m.loss_alpha1,
        "contribution": m.loss_alpha0 - m.loss_alpha1,
        "threshold": config.min_contribution,
        **contribution.measured("contribution"),
        "nonfinite": float(m.nonfinite),
    }
    if m.nonfinite:
        return Gate(G4, Outcome.FAIL, "non-finite seed output", measured)
    if watched < config.probation_epochs:
        return Gate(G4, Outcome.WAIT, f"probation {watched} of {config.probation_epochs} epochs", measured)
    if contribution.n < 2 or not finite(contribution.mean, contribution.std_error):
        return Gate(
            G4, Outcome.FAIL, "contribution not measured per example (paired evidence missing)", measured
        )
    threshold, n = config.min_contribution, contribution.n
    bounds = (
        f"contribution {contribution.mean:.4g} per example, lower bound {contribution.lower:.4g}, "
        f"upper bound {contribution.upper:.4g}"
    )
    if contribution.lower > threshold:
        return Gate(G4, Outcome.PASS, f"{bounds}: shown to help (lower > {threshold:g}, n={n})", measured)
    if contribution.upper < threshold:
        return Gate(G4, Outcome.FAIL, f"{bounds}: shown not to help (upper < {threshold:g}, n={n})", measured)
    if watched < deadline:
        return Gate(
            G4,
            Outcome.WAIT,
            f"{bounds}: undecided at {watched} of at most {deadline} epochs (n={n})",
            measured,
        )
    return Gate(
        G4,
        Outcome.FAIL,
        f"no contribution shown (lower bound {contribution.lower:.4g} <= {threshold:g}, mean "
        f"{contribution.mean:.4g}, n={n}) after {watched} epochs of probation",
        measured,
    )


def without_extension(config: LifecycleConfig) -> LifecycleConfig:
    """The limits at the run's last boundary: no epoch is left to gather more evidence, so G4 judges an
    undecided seed now (culled for showing no contribution) instead of leaving it to be torn down unjudged.
    The run_ending rule asks a germination for room to the end of probation, not of the extension: a late
    seed gets a shorter extension, never a refused germination for it."""
    return replace(config, probation_extension_epochs=0)


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
