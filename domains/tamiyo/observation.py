"""What one decision sees (`Observation`) and the pure readings the policy takes of it: headroom, stage
clocks, risk signals, plateau, the summary every DecisionMade records."""

from __future__ import annotations

import hashlib
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field

from domains.tamiyo.risk import (
    ACTIVE_STAGE_WEIGHTS,
    RiskAssessment,
    RiskSignals,
    RiskThresholds,
    lifecycle_signal,
    ratio,
)
from domains.tamiyo.state import REFERENCES_RESET, TamiyoState, contribution_key
from leyline import pb
from leyline.controller import DEFAULT_HOOK_BUDGET_MS
from leyline.lifecycle import CULLED, DORMANT, EMBARGOED, LifecycleConfig
from leyline.seed_metrics import CONTRIBUTION_METRIC, HEADROOM_METRIC, STAGE_EPOCHS_METRIC

CULL_STAGES = frozenset({CULLED, EMBARGOED})  # a seed's stages from the boundary that culled it


@dataclass(frozen=True)
class Observation:
    """What one decision sees: the epoch's packet, the seeds, the catalogue and the edge's measurements."""

    run_id: str
    epoch: int
    packet_id: int
    training_loss: float
    validation_loss: float
    validation_accuracy: float
    grad_norm: float
    memory_pressure: float
    hook_ms: float
    parameters: int
    seeds: tuple[pb.SeedState, ...]
    catalogue: tuple[pb.BlueprintDescriptor, ...]
    applied_commands: tuple[str, ...]
    command_id: str  # the id a command issued by this decision takes
    now_ms: int
    blueprint_costs: Mapping[tuple[str, int], int] = field(default_factory=dict)  # (bp, slot) → params
    slot_kinds: Mapping[int, int] = field(default_factory=dict)  # slot → pb.SlotKind, where known
    hook_budget_ms: float = DEFAULT_HOOK_BUDGET_MS  # the run's budget that hook_ms is measured against
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)  # the limits Kasmina enforces


def headroom(seed: pb.SeedState) -> float:
    """A slot's measured headroom (`metrics["headroom"]`), else its gradient norm."""
    return seed.metrics.get(HEADROOM_METRIC, seed.gradient_norm)


def active_seeds(seeds: tuple[pb.SeedState, ...]) -> int:
    """Seeds in a stage that touches the host (germinated through probationary)."""
    return sum(1 for seed in seeds if seed.stage in ACTIVE_STAGE_WEIGHTS)


def stage_epochs(seed: pb.SeedState) -> int:
    """Epochs the seed has spent in its current stage (Kasmina's metric; age since germination if absent)."""
    return int(seed.metrics.get(STAGE_EPOCHS_METRIC, seed.age_epochs))


def isolation_cull_count(lifecycle: LifecycleConfig) -> int:
    """Isolation violations at which Tamiyo culls: one fewer than Kasmina's automatic cull, so the
    controller's targeted cull comes first (never below one)."""
    return max(1, lifecycle.max_isolation_violations - 1)


def references_reset(observation: Observation) -> bool:
    """Whether this window's losses are the first measured without a seed culled at the last boundary
    (CULLED or EMBARGOED for one epoch): the host then computes another function, and the loss change its
    removal causes is the seed's doing, not a drift or explosion of the host. Tamiyo's loss references
    restart here (state.evolve), as Tolaria's explosion guard restarts its own at a cull."""
    return any(s.stage in CULL_STAGES and stage_epochs(s) == 1 for s in observation.seeds)


def risk_signals(
    state: TamiyoState, observation: Observation, thresholds: RiskThresholds | None = None
) -> RiskSignals:
    """The window's signals. A loss rise smaller than its absolute floor (thresholds.loss_*_floor) reads
    as calm (drift 0, explosion 1): the ratios of near-zero losses are noise."""
    floors = thresholds or RiskThresholds()
    finite_norms = [n for n in state.grad_norms[-5:] if math.isfinite(n)]
    reference_norm = statistics.median(finite_norms) if finite_norms else 0.0
    reset = references_reset(observation)  # no reference: this window's losses are the first ones
    recent_losses = [] if reset else [v for v in state.validation_losses[-5:] if math.isfinite(v)]
    explosion = ratio(observation.training_loss, state.best_training_loss)
    rise = observation.training_loss - state.best_training_loss
    if math.isfinite(explosion) and (reset or rise < floors.loss_explosion_floor):
        explosion = 1.0
    drift = 0.0
    if not math.isfinite(observation.validation_loss):
        drift = math.inf
    elif recent_losses and min(recent_losses) > 0:
        best = min(recent_losses)
        if observation.validation_loss - best >= floors.loss_drift_floor:
            drift = max(0.0, observation.validation_loss / best - 1.0)
    return RiskSignals(
        grad_norm_ratio=ratio(observation.grad_norm, reference_norm),
        loss_drift=drift,
        loss_explosion=explosion,
        memory_pressure=observation.memory_pressure,
        hook_latency_ratio=observation.hook_ms / observation.hook_budget_ms,
        lifecycle=lifecycle_signal(observation.seeds),
    )


def observation_summary(observation: Observation) -> dict[str, float]:
    """The packet's measurements every DecisionMade records, the controller's safe no-op's included."""
    return {
        "epoch": float(observation.epoch),
        "training_loss": observation.training_loss,
        "validation_loss": observation.validation_loss,
        "validation_accuracy": observation.validation_accuracy,
        "grad_norm": observation.grad_norm,
        "parameters": float(observation.parameters),
    }


def inputs_summary(
    observation: Observation, signals: RiskSignals, assessment: RiskAssessment
) -> dict[str, float]:
    summary = observation_summary(observation)
    summary["active_seeds"] = float(active_seeds(observation.seeds))
    summary["risk_raw"] = float(assessment.level)
    if references_reset(observation):
        summary[REFERENCES_RESET] = 1.0
    for seed in observation.seeds:
        if seed.stage == DORMANT and HEADROOM_METRIC in seed.metrics:
            summary[f"headroom_slot{seed.slot}"] = seed.metrics[HEADROOM_METRIC]
        if seed.stage != DORMANT and CONTRIBUTION_METRIC in seed.metrics:
            summary[contribution_key(seed.slot)] = seed.metrics[CONTRIBUTION_METRIC]
    for name, level in assessment.signal_levels.items():
        summary[f"level_{name}"] = float(level)
    summary["signal_loss_drift"] = signals.loss_drift
    summary["signal_grad_norm_ratio"] = signals.grad_norm_ratio
    return summary


def graftable(descriptor: pb.BlueprintDescriptor) -> bool:
    """Whether a catalogue entry may be grafted at all: never quarantine-only; the safe tier, and the
    experimental tier once approved (`esper blueprints approve`)."""
    if descriptor.quarantine_only:
        return False
    if descriptor.tier == pb.BLUEPRINT_TIER_EXPERIMENTAL:
        return descriptor.approved
    return descriptor.tier == pb.BLUEPRINT_TIER_SAFE


def plateaued(losses: tuple[float, ...], window: int, epsilon: float) -> bool:
    """No relative improvement above epsilon of the best loss over the last `window` epochs."""
    if len(losses) < window + 1 or not all(math.isfinite(v) for v in losses[-window - 1 :]):
        return False
    best_before = min(losses[:-window])
    best_recent = min(losses[-window:])
    return best_recent > best_before * (1.0 - epsilon)


def tiebreak(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest(), "little")
