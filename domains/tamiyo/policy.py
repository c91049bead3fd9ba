"""The heuristic policy: `decide(state, observation) -> payloads`, pure and deterministic for a given seed.

One decision per epoch boundary, at most one command, in this order of precedence:
1. a seed whose gate evidence is bad (non-finite values, exploding gradient, isolation violations, a
   training stage that never ends, a measured contribution below the threshold after probation and G4's
   extension) → cull
   (the targeted remedy comes before the drastic one);
2. a loss signal at the rollback level this window → request a rollback to the last safe epoch (once per
   target);
3. risk level ≥ block level → no-op;
4. with `advance_seeds`, a seed whose stage has lasted its minimum and whose evidence is good → advance
   (in conservative mode a seed is not advanced into BLENDING, which changes the host's output). Off by
   default: Esper's Kasmina evaluates gates G1–G4 itself at every boundary, before the controller decides,
   so an ADVANCE there could only repeat a gate that just waited (and be rejected); a seed manager that
   waits for the controller turns it on;
5. a germination Kasmina would refuse because the run ends before the seed's verdict (its rule,
   `domains.kasmina.unfinished.too_late_reason`, at the ramp this decision would ask for) → no-op;
6. validation loss on a plateau (no relative improvement above epsilon over `plateau_window` epochs), fewer
   active seeds than the maximum, no germination within `germination_cooldown_epochs`, a DORMANT slot
   outside Tamiyo's own embargo → germinate, at an open widening slot if there is one, else at the slot
   with the most measured headroom, a blueprint chosen from catalogue metadata within the parameter
   budget. Headroom measures what a graft of the slot's own width could change; a widening adds units
   the host's stream does not have (on cnn-lite, what conv1's few channels drop cannot come back
   through any residual graft after them), so it is tried first, and where its blueprints are culled
   the outcome rule below moves on to the other slots.

Blueprint choice: quarantine-only, adversarial and unapproved templates, templates above the risk cap of
the current level (an approved experimental one is exempt from the calm level's cap: its approval accepts
its risk) and templates that would exceed the parameter budget are never chosen (in conservative
mode only the conservative pool). Among the rest, over the slots of equal (top) headroom, choice.py ranks
by a catalogue prior (capacity, less risk aversion) moved by the run's own outcomes per slot and
blueprint (outcomes.py: an upper confidence bound that explores blueprints tried less); a blueprint
culled at a slot is not chosen there again while anything else is eligible. Ties break by a hash of
(seed, blueprint, slot), so the choice depends on the seed and the run's events only.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

from google.protobuf.message import Message

from domains.tamiyo.choice import Graft, best_graft, explain
from domains.tamiyo.commands import Choice, Issuer, germination, rollback, seed_command
from domains.tamiyo.config import HeuristicConfig
from domains.tamiyo.observation import (
    Observation,
    active_seeds,
    germination_ramp,
    graftable,
    headroom,
    hook_action_cost,
    inputs_summary,
    isolation_cull_count,
    loss_plateau,
    risk_signals,
    run_ending,
    stage_epochs,
)
from domains.tamiyo.outcomes import Outcome
from domains.tamiyo.reports import field_reports
from domains.tamiyo.risk import (
    ACTIVE_STAGE_WEIGHTS,
    RiskAction,
    action_for,
    assess,
    effective_level,
    to_pb_level,
)
from domains.tamiyo.state import TamiyoState, resolve_pending, with_outcomes
from leyline import pb
from leyline.lifecycle import stage_name
from leyline.seed_metrics import CONTRIBUTION_METRIC, ISOLATION_METRIC


def slot_order(observation: Observation) -> Callable[[pb.SeedState], tuple[bool, float]]:
    """A dormant slot's place in the germination order: widening slots first, then by measured headroom
    (slots with equal keys are ranked together by choice.py)."""

    def key(seed: pb.SeedState) -> tuple[bool, float]:
        return observation.slot_kinds.get(seed.slot) != pb.SLOT_KIND_WIDEN, -headroom(seed)

    return key


class HeuristicPolicy:
    name = "heuristic"
    version = "1.0"

    def __init__(self, config: HeuristicConfig | None = None) -> None:
        self.config = config or HeuristicConfig()

    def decide(self, state: TamiyoState, observation: Observation) -> list[Message]:
        config = self.config
        signals = risk_signals(state, observation, config.thresholds)
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

        reports = field_reports(resolved, observation, self.config)
        # A seed that ended at this boundary teaches the choice made at this boundary (a cull is seen here).
        learned = with_outcomes(resolved, reports)
        choice = self._choose(learned, observation, level, assessment.loss_level, conservative)
        decision = pb.DecisionMade(
            policy_name=self.name,
            policy_version=self.version,
            inputs_summary=inputs_summary(
                observation, signals, assessment, hook_action_cost(state, observation)
            ),
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
        payloads.extend(reports)
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
            # G4 weighs an undecided seed's per-example evidence through its extension; a point
            # contribution below the threshold in that window is no verdict to pre-empt it with
            if (
                seed.stage == pb.SEED_STAGE_PROBATIONARY
                and stage_epochs(seed) >= limits.probation_deadline_epochs
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
            stage = stage_name(seed.stage).lower()
            return seed, f"{stage} for {stage_epochs(seed)} epochs with good evidence"
        return None

    def _germination(
        self, state: TamiyoState, observation: Observation, level: int, conservative: bool
    ) -> Choice:
        config = self.config
        late = run_ending(observation, germination_ramp(config, observation, level, conservative))
        if late is not None:
            return Choice("noop", f"no germination: {late}")
        if not loss_plateau(config, state, observation):
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
        # A blueprint culled at a slot is tried there again only when nothing else is left anywhere.
        for allow_culled in (False, True):
            for _, tied in itertools.groupby(slots, key=slot_order(observation)):
                best = self._best_graft(
                    observation, list(tied), level, conservative, state.outcomes, allow_culled
                )
                if best is not None:
                    return self._germinate(
                        observation, level, conservative, best.slot, best.blueprint, explain(best)
                    )
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
        order = slot_order(observation)
        return sorted(open_slots, key=lambda s: (*order(s), s.slot))

    def eligible_blueprints(
        self, observation: Observation, slot: int, level: int, conservative: bool
    ) -> list[pb.BlueprintDescriptor]:
        """The catalogue entries that may be grafted at this slot now (hard safety filters only)."""
        config = self.config
        mitigated = level >= 1 or conservative
        cap = config.mitigated_blueprint_risk if mitigated else config.max_blueprint_risk
        kind = observation.slot_kinds.get(slot)
        eligible = []
        for descriptor in observation.catalogue:
            if not graftable(descriptor):
                continue
            if descriptor.requires_approval and not descriptor.approved:
                continue
            # an operator's approval accepts the blueprint's own risk, at calm levels only
            approved = descriptor.requires_approval and not mitigated
            if (descriptor.risk > cap and not approved) or (
                conservative and not descriptor.conservative_pool
            ):
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
        self,
        observation: Observation,
        slots: list[pb.SeedState],
        level: int,
        conservative: bool,
        outcomes: tuple[Outcome, ...] = (),
        allow_culled: bool = False,
    ) -> Graft | None:
        """The best (slot, blueprint) among slots of equal headroom (choice.py), or None."""

        def eligible(slot: int) -> list[pb.BlueprintDescriptor]:
            return self.eligible_blueprints(observation, slot, level, conservative)

        return best_graft(
            self.config, observation, slots, eligible, level, conservative, outcomes, allow_culled
        )

    def likely_grafts(self, observation: Observation) -> list[tuple[int, pb.BlueprintDescriptor]]:
        """The (slot, blueprint) a germination would choose at each dormant slot: calm first, then at risk
        level 1 and in conservative mode. What a run compiles before its first boundary may need it."""
        picks: list[tuple[int, pb.BlueprintDescriptor]] = []
        dormant = sorted(
            (s for s in observation.seeds if s.stage == pb.SEED_STAGE_DORMANT), key=lambda s: s.slot
        )
        for level, conservative in ((0, False), (1, False), (0, True)):
            for seed in dormant:
                best = self._best_graft(observation, [seed], level, conservative)
                if best is not None and all(
                    (seed.slot, best.blueprint.blueprint_id) != (s, d.blueprint_id) for s, d in picks
                ):
                    picks.append((seed.slot, best.blueprint))
        return picks

    # ------------------------------------------------------------------ commands (commands.py)

    def _seed_command(
        self,
        observation: Observation,
        level: int,
        action: str,
        operation: pb.SeedOperation,
        seed: pb.SeedState,
        reason: str,
    ) -> Choice:
        return seed_command(self._issuer(observation, level), action, operation, seed, reason)

    def _germinate(
        self,
        observation: Observation,
        level: int,
        conservative: bool,
        slot: pb.SeedState,
        blueprint: pb.BlueprintDescriptor,
        learned: str = "",
    ) -> Choice:
        ramp = germination_ramp(self.config, observation, level, conservative)
        issuer = self._issuer(observation, level)
        return germination(issuer, self.config.plateau_window, ramp, observation, slot, blueprint, learned)

    def _rollback(self, observation: Observation, level: int, target: int) -> Choice:
        return rollback(self._issuer(observation, level), target)

    def _issuer(self, observation: Observation, level: int) -> Issuer:
        policy_version = f"{self.name}-{self.version}"
        return Issuer(
            policy_version, observation.command_id, observation.now_ms, self.config.command_deadline_ms, level
        )
