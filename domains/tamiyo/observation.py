"""What one decision sees (`Observation`) and the pure readings the policy takes of it: headroom, stage
clocks, risk signals, plateau, the summary every DecisionMade records."""

from __future__ import annotations

import hashlib
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field

from domains.tamiyo.config import HeuristicConfig
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
# The commands Kasmina carries out inside the end-of-epoch hook (a graft loads, and may compile, the
# blueprint's module); a rollback is only granted there and applied after the hook.
HOOK_ACTIONS = frozenset({"germinate", "advance", "cull"})
HOOK_ACTION_COST = "hook_action_cost"  # an inputs_summary key: the hook latency read as calm (below)


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
    run_epochs: int | None = None  # the run's last epoch (ControllerContext.run_epochs); None: no end


def headroom(seed: pb.SeedState) -> float:
    """A slot's measured headroom (`metrics["headroom"]`), else its gradient norm."""
    return seed.metrics.get(HEADROOM_METRIC, seed.gradient_norm)


def active_seeds(seeds: tuple[pb.SeedState, ...]) -> int:
    """Seeds in a stage that touches the host (germinated through probationary)."""
    return sum(1 for seed in seeds if seed.stage in ACTIVE_STAGE_WEIGHTS)


def stage_epochs(seed: pb.SeedState) -> int:
    """Epochs the seed has spent in its current stage (Kasmina's metric; age since germination if absent)."""
    return int(seed.metrics.get(STAGE_EPOCHS_METRIC, seed.age_epochs))


def germination_ramp(
    config: HeuristicConfig, observation: Observation, level: int, conservative: bool
) -> int:
    """The alpha ramp a germination asks for: the lifecycle's, at least `mitigated_alpha_ramp_epochs` at a
    raised risk level or in conservative mode."""
    ramp = observation.lifecycle.alpha_ramp_epochs
    mitigated = level >= 1 or conservative
    return max(ramp, config.mitigated_alpha_ramp_epochs) if mitigated else ramp


def run_ending(observation: Observation, alpha_ramp_epochs: int) -> str | None:
    """Why Kasmina would refuse a germination with this ramp at this boundary (`run_ending`: the seed could
    not reach its verdict before the run's last epoch), or None. Kasmina's own rule, not a copy of it."""
    if observation.run_epochs is None:
        return None
    # imported here: the domains.kasmina package imports torch, which the CLI's pure paths must not load
    from domains.kasmina.unfinished import too_late_reason

    return too_late_reason(
        observation.epoch, observation.run_epochs, observation.lifecycle, alpha_ramp_epochs
    )


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


def hook_action_cost(state: TamiyoState, observation: Observation) -> bool:
    """Whether the hook that `observation.hook_ms` measured carried out a seed command of Tamiyo's own
    (one Kasmina applied: it is in `applied_commands`). Its latency is then that action's cost, not a
    health signal: measured on the default digits run, every overrun was a graft's command phase (the
    blueprint's module loaded, or compiled, inside the hook: 0.26–11 s wall against 18 ms, 0.2–1.2 s of
    the thread's CPU), the boundaries without a command stayed under 10 ms, and reading the grafts'
    cost as latency put the next 3 windows at level 3–4, blocking the growth that caused it. The overrun
    stays on record (Tolaria's EpochHookOverrun, Nissa's latency alert); Tamiyo does not hold still for
    it, as it does not read the loss jump of a seed it culled as drift (`references_reset`)."""
    applied = set(observation.applied_commands)
    return any(c.command_id in applied and c.action in HOOK_ACTIONS for c in state.pending)


def risk_signals(
    state: TamiyoState, observation: Observation, thresholds: RiskThresholds | None = None
) -> RiskSignals:
    """The window's signals. A loss rise smaller than its absolute floor (thresholds.loss_*_floor) reads
    as calm (drift 0, explosion 1): the ratios of near-zero losses are noise. The previous hook's latency
    reads as calm (0) when that hook carried out Tamiyo's own seed command (`hook_action_cost`)."""
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
        hook_latency_ratio=0.0 if hook_action_cost(state, observation) else hook_latency(observation),
        lifecycle=lifecycle_signal(observation.seeds),
    )


def hook_latency(observation: Observation) -> float:
    """The previous end-of-epoch hook's wall-clock duration over the run's budget for it."""
    return observation.hook_ms / observation.hook_budget_ms


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
    observation: Observation, signals: RiskSignals, assessment: RiskAssessment, action_cost: bool = False
) -> dict[str, float]:
    """What the decision saw: the packet's measurements, the risk signals behind its level (the hook's
    measured latency always, beside the signal read from it) and per slot the gate evidence."""
    summary = observation_summary(observation)
    summary["active_seeds"] = float(active_seeds(observation.seeds))
    summary["risk_raw"] = float(assessment.level)
    if references_reset(observation):
        summary[REFERENCES_RESET] = 1.0
    summary["hook_ms"] = observation.hook_ms
    summary["hook_latency_measured"] = hook_latency(observation)
    summary["signal_hook_latency_ratio"] = signals.hook_latency_ratio
    if action_cost:
        summary[HOOK_ACTION_COST] = 1.0
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


def loss_plateau(config: HeuristicConfig, state: TamiyoState, observation: Observation) -> bool:
    """The germination signal: the validation loss, this epoch's included, on a plateau (`plateaued` at the
    configured window and epsilon). The heuristic germinates on it; the learned policy reads it as a
    feature (domains/tamiyo/gnn/record.py)."""
    losses = (*state.validation_losses, observation.validation_loss)
    return plateaued(losses, config.plateau_window, config.plateau_epsilon)


def tiebreak(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest(), "little")
