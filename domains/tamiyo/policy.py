"""The heuristic policy: `decide(state, observation) -> payloads`, pure and deterministic for a given seed.

One decision per epoch boundary, at most one command, in this order of precedence:
1. a seed whose gate evidence is bad (non-finite values, exploding gradient, isolation violations, a
   training stage that never ends, a measured contribution below the threshold after probation) → cull
   (the targeted remedy comes before the drastic one);
2. a loss signal at the rollback level this window → request a rollback to the last safe epoch (once per
   target);
3. risk level ≥ block level → no-op;
4. with `advance_seeds`, a seed whose stage has lasted its minimum and whose evidence is good → advance
   (in conservative mode a seed is not advanced into BLENDING, which changes the host's output). Off by
   default: Esper's Kasmina evaluates gates G1–G4 itself at every boundary, before the controller decides,
   so an ADVANCE there could only repeat a gate that just waited (and be rejected); a seed manager that
   waits for the controller turns it on;
5. validation loss on a plateau (no relative improvement above epsilon over `plateau_window` epochs), fewer
   active seeds than the maximum, no germination within `germination_cooldown_epochs`, a DORMANT slot
   outside Tamiyo's own embargo → germinate, at the slot with the most measured headroom, a blueprint
   chosen from catalogue metadata within the parameter budget.

Blueprint choice: quarantine-only, adversarial and unapproved templates, templates above the risk cap of
the current level and templates that would exceed the parameter budget are never chosen (in conservative
mode only the conservative pool). Among the rest, over the slots of equal (top) headroom, the policy
prefers capacity (log of the estimated parameters, relative to the largest candidate: diminishing
returns); with `use_catalogue_metadata` the catalogue's risk score is subtracted with an aversion that
grows with the risk level. Ties break by a hash of (seed, blueprint, slot), so the choice depends on the
seed only.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from google.protobuf.message import Message

from domains.tamiyo.risk import (
    ACTIVE_STAGE_WEIGHTS,
    RiskAction,
    RiskAssessment,
    RiskSignals,
    RiskThresholds,
    action_for,
    assess,
    effective_level,
    lifecycle_signal,
    ratio,
    to_pb_level,
)
from domains.tamiyo.state import TamiyoState, TrackedCommand, resolve_pending
from leyline import pb
from leyline.controller import DEFAULT_HOOK_BUDGET_MS
from leyline.lifecycle import LifecycleConfig
from leyline.seed_metrics import CONTRIBUTION_METRIC, HEADROOM_METRIC, ISOLATION_METRIC, STAGE_EPOCHS_METRIC

ABORTING_STAGES = frozenset(
    {pb.SEED_STAGE_CULLED, pb.SEED_STAGE_EMBARGOED, pb.SEED_STAGE_RESETTING, pb.SEED_STAGE_DORMANT}
)


@dataclass(frozen=True)
class HeuristicConfig:
    seed: int = 0
    plateau_window: int = 3
    plateau_epsilon: float = 0.01  # relative improvement of the best validation loss that is progress
    germination_cooldown_epochs: int = 3
    max_concurrent_seeds: int = 1
    parameter_budget: int | None = None  # max trainable parameters of host + seeds
    max_blueprint_risk: float = 0.5
    mitigated_blueprint_risk: float = 0.25  # cap at risk levels 1–2 and in conservative mode
    use_catalogue_metadata: bool = True
    risk_aversion: float = 0.5
    mitigated_alpha_ramp_epochs: int = 6  # ramp at risk levels 1–2 (never faster than the lifecycle's)
    advance_seeds: bool = False
    exploration_epsilon: float = 0.0  # > 0: ε-exploration over legal actions (domains/tamiyo/exploration.py)
    block_level: int = 3
    rollback_level: int = 4
    conservative_enter_level: int = 3
    conservative_exit_level: int = 1
    conservative_exit_windows: int = 3
    observation_window: int = 3
    success_accuracy_delta: float = 0.002
    regression_accuracy_delta: float = -0.002
    command_deadline_ms: int = 5_000
    thresholds: RiskThresholds = field(default_factory=RiskThresholds)

    def __post_init__(self) -> None:
        if self.plateau_window < 1 or self.observation_window < 1:
            raise ValueError("plateau_window and observation_window must be at least 1")
        if self.max_concurrent_seeds < 0:
            raise ValueError("max_concurrent_seeds must be >= 0")
        if not 0.0 <= self.exploration_epsilon <= 1.0:
            raise ValueError(f"exploration_epsilon must be in [0, 1], got {self.exploration_epsilon}")
        if not 0 <= self.conservative_exit_level < self.conservative_enter_level <= 4:
            raise ValueError("need 0 <= conservative_exit_level < conservative_enter_level <= 4")

    def to_json(self) -> str:
        """The configuration RunStarted records (controller_config_json), so a resumed run restores it."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> HeuristicConfig:
        values = json.loads(text)
        thresholds = {name: tuple(levels) for name, levels in values.pop("thresholds").items()}
        return cls(**values, thresholds=RiskThresholds(**thresholds))


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


@dataclass(frozen=True)
class Choice:
    action: str  # "noop", "germinate", "advance", "cull", "rollback"
    reason: str
    command: pb.AdaptationCommand | None = None


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


def risk_signals(state: TamiyoState, observation: Observation) -> RiskSignals:
    finite_norms = [n for n in state.grad_norms[-5:] if math.isfinite(n)]
    reference_norm = statistics.median(finite_norms) if finite_norms else 0.0
    recent_losses = [v for v in state.validation_losses[-5:] if math.isfinite(v)]
    drift = 0.0
    if not math.isfinite(observation.validation_loss):
        drift = math.inf
    elif recent_losses and min(recent_losses) > 0:
        drift = max(0.0, observation.validation_loss / min(recent_losses) - 1.0)
    return RiskSignals(
        grad_norm_ratio=ratio(observation.grad_norm, reference_norm),
        loss_drift=drift,
        loss_explosion=ratio(observation.training_loss, state.best_training_loss),
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
    for seed in observation.seeds:
        if seed.stage == pb.SEED_STAGE_DORMANT and HEADROOM_METRIC in seed.metrics:
            summary[f"headroom_slot{seed.slot}"] = seed.metrics[HEADROOM_METRIC]
    for name, level in assessment.signal_levels.items():
        summary[f"level_{name}"] = float(level)
    summary["signal_loss_drift"] = signals.loss_drift
    summary["signal_grad_norm_ratio"] = signals.grad_norm_ratio
    return summary


def graftable(descriptor: pb.BlueprintDescriptor) -> bool:
    """Whether a catalogue entry may be grafted at all: never quarantine-only, only the safe tier."""
    return not descriptor.quarantine_only and descriptor.tier == pb.BLUEPRINT_TIER_SAFE


def plateaued(losses: tuple[float, ...], window: int, epsilon: float) -> bool:
    """No relative improvement above epsilon of the best loss over the last `window` epochs."""
    if len(losses) < window + 1 or not all(math.isfinite(v) for v in losses[-window - 1 :]):
        return False
    best_before = min(losses[:-window])
    best_recent = min(losses[-window:])
    return best_recent > best_before * (1.0 - epsilon)


def tiebreak(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest(), "little")


class HeuristicPolicy:
    name = "heuristic"
    version = "1.0"

    def __init__(self, config: HeuristicConfig | None = None) -> None:
        self.config = config or HeuristicConfig()

    def decide(self, state: TamiyoState, observation: Observation) -> list[Message]:
        config = self.config
        signals = risk_signals(state, observation)
        assessment = assess(signals, config.thresholds)
        level = effective_level((*state.raw_levels, assessment.level))
        resolved = resolve_pending(state, observation.applied_commands)

        conservative = state.conservative
        mode_change: pb.ConservativeModeChanged | None = None
        if not conservative and level >= config.conservative_enter_level:
            conservative = True
            mode_change = pb.ConservativeModeChanged(
                active=True,
                reason=f"risk level {level} ({assessment.dominant})",
                risk_level=to_pb_level(level),
                epoch=observation.epoch,
            )
        elif conservative and self._calm_windows(state, assessment.level) >= config.conservative_exit_windows:
            conservative = False
            mode_change = pb.ConservativeModeChanged(
                active=False,
                reason=f"risk at or below level {config.conservative_exit_level} for "
                f"{config.conservative_exit_windows} windows",
                risk_level=to_pb_level(level),
                epoch=observation.epoch,
            )

        choice = self._choose(resolved, observation, level, assessment.loss_level, conservative)
        decision = pb.DecisionMade(
            policy_name=self.name,
            policy_version=self.version,
            inputs_summary=inputs_summary(observation, signals, assessment),
            risk_level=to_pb_level(level),
            command_id=choice.command.command_id if choice.command else "",
            action=choice.action,
            conservative=conservative,
            reason=choice.reason,
            packet_id=observation.packet_id,
            applied_command_ids=observation.applied_commands,
            epoch=observation.epoch,
        )
        payloads: list[Message] = [decision]
        if mode_change is not None:
            payloads.append(mode_change)
        if choice.command is not None:
            payloads.append(pb.AdaptationCommandIssued(command=choice.command))
        payloads.extend(self._field_reports(resolved, observation))
        return payloads

    def _calm_windows(self, state: TamiyoState, raw_level: int) -> int:
        """Consecutive windows, this one included, at or below the exit level since the mode changed."""
        since_change = state.raw_levels[-state.windows_in_mode :] if state.windows_in_mode else ()
        levels = (*since_change, raw_level)
        calm = 0
        for value in reversed(levels):
            if value > self.config.conservative_exit_level:
                break
            calm += 1
        return calm

    # ------------------------------------------------------------------ choice

    def _choose(
        self, state: TamiyoState, observation: Observation, level: int, loss_level: int, conservative: bool
    ) -> Choice:
        config = self.config
        action = action_for(level, loss_level, config.block_level, config.rollback_level)
        cull = self._seed_to_cull(observation)
        if cull is not None:
            seed, why = cull
            return self._seed_command(observation, level, "cull", pb.SEED_OP_CULL, seed, why)
        if action is RiskAction.ROLLBACK:
            target = state.safe_epoch
            if 0 <= target < observation.epoch and target != state.last_rollback_target:
                return self._rollback(observation, level, target)
            return Choice("noop", "loss critical, but no safe epoch left to roll back to: blocked")
        if action is RiskAction.BLOCK:
            return Choice("noop", f"risk level {level}: germination and advancement blocked")
        advance = self._seed_to_advance(observation, conservative) if config.advance_seeds else None
        if advance is not None:
            seed, why = advance
            return self._seed_command(observation, level, "advance", pb.SEED_OP_ADVANCE, seed, why)
        return self._germination(state, observation, level, conservative)

    def _seed_to_cull(self, observation: Observation) -> tuple[pb.SeedState, str] | None:
        limits = observation.lifecycle
        cull_count = isolation_cull_count(limits)
        for seed in sorted(observation.seeds, key=lambda s: s.slot):
            if seed.stage not in ACTIVE_STAGE_WEIGHTS:
                continue
            values = [seed.gradient_norm, seed.alpha, *seed.metrics.values()]
            if not all(math.isfinite(v) for v in values):
                return seed, "non-finite seed measurements"
            if seed.gradient_norm > limits.max_grad_norm:
                return seed, f"seed gradient norm {seed.gradient_norm:.3g} above {limits.max_grad_norm}"
            violations = seed.metrics.get(ISOLATION_METRIC, 0.0)
            if violations >= cull_count:
                return seed, f"{violations:.0f} gradient isolation violations"
            if seed.stage == pb.SEED_STAGE_TRAINING and stage_epochs(seed) > limits.max_training_epochs:
                return seed, f"still training after {stage_epochs(seed)} epochs"
            contribution = seed.metrics.get(CONTRIBUTION_METRIC)
            if (
                seed.stage == pb.SEED_STAGE_PROBATIONARY
                and stage_epochs(seed) >= limits.probation_epochs
                and contribution is not None
                and contribution < limits.min_contribution
            ):
                return seed, f"contribution {contribution:.4f} below {limits.min_contribution}"
        return None

    def _seed_to_advance(
        self, observation: Observation, conservative: bool
    ) -> tuple[pb.SeedState, str] | None:
        limits = observation.lifecycle
        minimum_age = {
            pb.SEED_STAGE_TRAINING: limits.min_training_epochs,
            pb.SEED_STAGE_BLENDING: limits.alpha_ramp_epochs,
            pb.SEED_STAGE_SHADOWING: 1,
            pb.SEED_STAGE_PROBATIONARY: limits.probation_epochs,
        }
        for seed in sorted(observation.seeds, key=lambda s: s.slot):
            needed = minimum_age.get(seed.stage)
            if needed is None or stage_epochs(seed) < needed:
                continue
            if conservative and seed.stage == pb.SEED_STAGE_TRAINING:
                continue
            if seed.stage == pb.SEED_STAGE_BLENDING and seed.alpha < 1.0:
                continue
            if seed.stage == pb.SEED_STAGE_PROBATIONARY and CONTRIBUTION_METRIC not in seed.metrics:
                continue
            stage = pb.SeedLifecycleStage.Name(seed.stage).removeprefix("SEED_STAGE_").lower()
            return seed, f"{stage} for {stage_epochs(seed)} epochs with good evidence"
        return None

    def _germination(
        self, state: TamiyoState, observation: Observation, level: int, conservative: bool
    ) -> Choice:
        config = self.config
        losses = (*state.validation_losses, observation.validation_loss)
        if not plateaued(losses, config.plateau_window, config.plateau_epsilon):
            return Choice("noop", "validation loss still improving")
        active = active_seeds(observation.seeds)
        limit = min(config.max_concurrent_seeds, 1) if conservative else config.max_concurrent_seeds
        if active >= limit:
            return Choice("noop", f"plateau, but {active} seed(s) active (max {limit})")
        if (
            state.last_germination_epoch >= 0
            and observation.epoch - state.last_germination_epoch < config.germination_cooldown_epochs
        ):
            return Choice("noop", "plateau, but a germination is cooling down")
        slots = self._open_slots(state, observation)
        if not slots:
            return Choice("noop", "plateau, but no dormant slot outside embargo")
        for _, tied in itertools.groupby(slots, key=headroom):
            best = self._best_graft(observation, list(tied), level, conservative)
            if best is not None:
                return self._germinate(observation, level, conservative, *best)
        return Choice("noop", "plateau, but no blueprint fits the risk cap and parameter budget")

    def _open_slots(self, state: TamiyoState, observation: Observation) -> list[pb.SeedState]:
        embargo = observation.lifecycle.embargo_epochs
        open_slots = []
        for seed in observation.seeds:
            if seed.stage != pb.SEED_STAGE_DORMANT:
                continue
            culled = state.cull_epoch(seed.slot)
            if culled is not None and observation.epoch - culled < embargo:
                continue
            open_slots.append(seed)
        return sorted(open_slots, key=lambda s: (-headroom(s), s.slot))

    def eligible_blueprints(
        self, observation: Observation, slot: int, level: int, conservative: bool
    ) -> list[pb.BlueprintDescriptor]:
        """The catalogue entries that may be grafted at this slot now (hard safety filters only)."""
        config = self.config
        cap = config.mitigated_blueprint_risk if level >= 1 or conservative else config.max_blueprint_risk
        kind = observation.slot_kinds.get(slot)
        eligible = []
        for descriptor in observation.catalogue:
            if not graftable(descriptor):
                continue
            if descriptor.requires_approval and not descriptor.approved:
                continue
            if descriptor.risk > cap or (conservative and not descriptor.conservative_pool):
                continue
            if kind is not None and descriptor.slot_kinds and kind not in descriptor.slot_kinds:
                continue
            cost = observation.blueprint_costs.get((descriptor.blueprint_id, slot))
            if config.parameter_budget is not None and (
                cost is None or observation.parameters + cost > config.parameter_budget
            ):
                continue
            eligible.append(descriptor)
        return eligible

    def _best_graft(
        self, observation: Observation, slots: list[pb.SeedState], level: int, conservative: bool
    ) -> tuple[pb.SeedState, pb.BlueprintDescriptor] | None:
        """The best (slot, blueprint) among slots of equal headroom, or None if nothing is eligible."""
        config = self.config
        pairs = [
            (slot, descriptor)
            for slot in slots
            for descriptor in self.eligible_blueprints(observation, slot.slot, level, conservative)
        ]
        if not pairs:
            return None

        def capacity(slot: pb.SeedState, descriptor: pb.BlueprintDescriptor) -> float:
            cost = observation.blueprint_costs.get((descriptor.blueprint_id, slot.slot))
            return math.log1p(cost if cost is not None else descriptor.curriculum_stage + 1)

        largest = max(capacity(*pair) for pair in pairs) or 1.0
        aversion = config.risk_aversion * (1 + level) * (2 if conservative else 1)

        def rank(pair: tuple[pb.SeedState, pb.BlueprintDescriptor]) -> tuple[float, int]:
            slot, descriptor = pair
            value = capacity(slot, descriptor) / largest
            if config.use_catalogue_metadata:
                value -= aversion * descriptor.risk
            return round(value, 9), tiebreak(config.seed, f"{descriptor.blueprint_id}@{slot.slot}")

        return max(pairs, key=rank)

    # ------------------------------------------------------------------ commands

    def _base_command(
        self, observation: Observation, level: int, action: str, reason: str
    ) -> pb.AdaptationCommand:
        return pb.AdaptationCommand(
            command_id=observation.command_id,
            execution_deadline_ms=observation.now_ms + self.config.command_deadline_ms,
            issued_by="tamiyo",
            policy_version=f"{self.name}-{self.version}",
            annotations={"action": action, "risk_level": str(level), "reason": reason},
            issued_at_ms=observation.now_ms,
        )

    def _seed_command(
        self,
        observation: Observation,
        level: int,
        action: str,
        operation: pb.SeedOperation,
        seed: pb.SeedState,
        reason: str,
    ) -> Choice:
        command = self._base_command(observation, level, action, reason)
        command.command_type = pb.COMMAND_TYPE_SEED
        command.target_seed_id = seed.seed_id
        command.target_slot = seed.slot
        command.seed_operation.operation = operation
        command.seed_operation.blueprint_id = seed.blueprint_id
        return Choice(action, f"slot {seed.slot}: {reason}", command)

    def _germinate(
        self,
        observation: Observation,
        level: int,
        conservative: bool,
        slot: pb.SeedState,
        blueprint: pb.BlueprintDescriptor,
    ) -> Choice:
        config = self.config
        mitigated = level >= 1 or conservative
        ramp = observation.lifecycle.alpha_ramp_epochs
        if mitigated:
            ramp = max(ramp, config.mitigated_alpha_ramp_epochs)
        reason = (
            f"validation loss plateaued over {config.plateau_window} epochs; slot {slot.slot} has the most "
            f"headroom; {blueprint.blueprint_id} ({blueprint.name}, risk {blueprint.risk:.2f})"
        )
        command = self._base_command(observation, level, "germinate", reason)
        command.command_type = pb.COMMAND_TYPE_SEED
        command.target_seed_id = max((s.seed_id for s in observation.seeds), default=0) + 1
        command.target_slot = slot.slot
        command.seed_operation.operation = pb.SEED_OP_GERMINATE
        command.seed_operation.blueprint_id = blueprint.blueprint_id
        command.seed_operation.alpha_ramp_epochs = ramp
        for name, parameter in blueprint.parameter_ranges.items():
            command.seed_operation.parameters[name] = parameter.default
        return Choice("germinate", reason, command)

    def _rollback(self, observation: Observation, level: int, target: int) -> Choice:
        reason = f"loss critical: roll back to epoch {target}, the last safe one"
        command = self._base_command(observation, level, "rollback", reason)
        command.command_type = pb.COMMAND_TYPE_ROLLBACK
        command.rollback.target_epoch = target
        command.rollback.mode = pb.ROLLBACK_MODE_FAST
        command.rollback.reason = reason
        return Choice("rollback", reason, command)

    # ------------------------------------------------------------------ field reports

    def _field_reports(self, state: TamiyoState, observation: Observation) -> list[Message]:
        reports: list[Message] = []
        for window in state.windows:
            rolled_back = observation.epoch < window.epoch
            if not rolled_back and observation.epoch < window.epoch + self.config.observation_window:
                continue
            report = self._report(window, observation, rolled_back)
            reports.append(pb.FieldReportIssued(report=report))
        return reports

    def _report(self, window: TrackedCommand, observation: Observation, rolled_back: bool) -> pb.FieldReport:
        config = self.config
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
