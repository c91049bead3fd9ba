"""Which (slot, blueprint) a germination grafts, among the eligible ones at slots of equal headroom.

The catalogue prior: capacity (log of the estimated parameters, relative to the largest candidate:
diminishing returns) less, with `use_catalogue_metadata`, the catalogue's risk score times an aversion
that grows with the risk level. The run's outcomes then move each candidate's score (outcomes.py: an
upper confidence bound around the prior), and a blueprint culled at a slot is left out there while
another candidate remains. Ties break by a hash of (seed, blueprint, slot), so the choice depends on the
seed and the run's events only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from domains.tamiyo.config import HeuristicConfig
from domains.tamiyo.observation import Observation, tiebreak
from domains.tamiyo.outcomes import Outcome, Score, culled_at, score
from leyline import pb

Eligible = Callable[[int], list[pb.BlueprintDescriptor]]  # slot → the blueprints that may go there now


@dataclass(frozen=True)
class Graft:
    slot: pb.SeedState
    blueprint: pb.BlueprintDescriptor
    score: Score


def best_graft(
    config: HeuristicConfig,
    observation: Observation,
    slots: list[pb.SeedState],
    eligible: Eligible,
    level: int,
    conservative: bool,
    outcomes: tuple[Outcome, ...] = (),
    allow_culled: bool = False,
) -> Graft | None:
    """The best graft among `slots`, or None if no candidate is left."""
    pairs = [
        (slot, descriptor)
        for slot in slots
        for descriptor in eligible(slot.slot)
        if allow_culled or descriptor.blueprint_id not in culled_at(outcomes, slot.slot)
    ]
    if not pairs:
        return None

    def capacity(slot: pb.SeedState, descriptor: pb.BlueprintDescriptor) -> float:
        cost = observation.blueprint_costs.get((descriptor.blueprint_id, slot.slot))
        return math.log1p(cost if cost is not None else descriptor.curriculum_stage + 1)

    largest = max(capacity(*pair) for pair in pairs) or 1.0
    aversion = config.risk_aversion * (1 + level) * (2 if conservative else 1)

    def scored(slot: pb.SeedState, descriptor: pb.BlueprintDescriptor) -> Score:
        prior = capacity(slot, descriptor) / largest
        if config.use_catalogue_metadata:
            prior -= aversion * descriptor.risk
        return score(
            prior,
            slot.slot,
            descriptor.blueprint_id,
            outcomes,
            config.outcome_prior_trials,
            config.exploration_bonus,
        )

    scores = {(slot.slot, d.blueprint_id): scored(slot, d) for slot, d in pairs}

    def rank(pair: tuple[pb.SeedState, pb.BlueprintDescriptor]) -> tuple[float, int]:
        slot, descriptor = pair
        value = scores[(slot.slot, descriptor.blueprint_id)].value
        return round(value, 9), tiebreak(config.seed, f"{descriptor.blueprint_id}@{slot.slot}")

    slot, descriptor = max(pairs, key=rank)
    return Graft(slot, descriptor, scores[(slot.slot, descriptor.blueprint_id)])


def explain(graft: Graft) -> str:
    """The learned part of a choice, for the decision's reason (empty before any outcome)."""
    s = graft.score
    if not (s.here or s.elsewhere or s.bonus):
        return ""
    return (
        f"; outcome score {s.value:.3f} (mean {s.mean:.3f} over {s.here} outcome(s) here, {s.elsewhere} "
        f"elsewhere; exploration bonus {s.bonus:.3f})"
    )
