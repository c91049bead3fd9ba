"""What the run's own grafts taught: per (slot, blueprint) outcomes, and the score that blueprint choice
ranks by (pure, torch-free).

Each germination's field report (reports.py) closes when its seed ends or its window does; `outcome_of`
turns it into an `Outcome` with a reward in [0, 1]: 1 for a fossilized seed, 0 for a culled one, else
0.5 moved by its measured contribution (validation loss at alpha 0 − alpha 1, through tanh on the scale
of `CONTRIBUTION_SCALE`); a report cut short by a rollback teaches nothing (the experiment was undone).

`score` is an upper confidence bound. A candidate's mean starts at its catalogue prior (the heuristic's
metadata rank: capacity, less risk aversion), counted as `outcome_prior_trials` pseudo-trials; outcomes at
the same slot count fully, the blueprint's outcomes at other slots half. The bonus
`exploration_bonus · sqrt(ln(1 + N) / (1 + n))` (N: the run's outcomes, n: the candidate's weighted
count) is 0 before any outcome, so the first choice is the prior's; afterwards blueprints tried less get
optimism, and those that failed fall behind. A blueprint culled at a slot is not chosen there again while
another is eligible (`culled_at`). Ties break by the seeded hash the policy already uses, so the choice is
a function of the seed and the run's events: deterministic, and the same after a resume.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from leyline import pb
from leyline.lifecycle import DORMANT, FOSSILIZED, QUARANTINE_STAGES

CONTRIBUTION_SCALE = 0.01  # validation-loss units at which a contribution counts as clearly good or bad
ELSEWHERE_WEIGHT = 0.5  # an outcome of the same blueprint at another slot counts half


@dataclass(frozen=True)
class Outcome:
    slot: int
    blueprint_id: str
    reward: float  # [0, 1]
    culled: bool


@dataclass(frozen=True)
class Score:
    value: float
    mean: float
    bonus: float
    here: int  # outcomes of this blueprint at this slot
    elsewhere: int  # at other slots


def outcome_of(report: pb.FieldReport) -> Outcome | None:
    """A germination's outcome (its report names where the seed stood); None for other reports and for
    one cut short by a rollback."""
    if report.seed_stage == pb.SEED_STAGE_UNKNOWN or report.end_epoch < report.start_epoch:
        return None
    stage = report.seed_stage
    culled = stage in QUARANTINE_STAGES or stage == DORMANT  # DORMANT: culled and already reset
    if stage == FOSSILIZED:
        reward = 1.0
    elif culled:
        reward = 0.0
    elif "contribution" in report.metrics:
        reward = 0.5 + 0.5 * math.tanh(report.metrics["contribution"] / CONTRIBUTION_SCALE)
    else:
        reward = 0.5
    return Outcome(report.slot, report.blueprint_id, reward, culled)


def culled_at(outcomes: Iterable[Outcome], slot: int) -> frozenset[str]:
    return frozenset(o.blueprint_id for o in outcomes if o.slot == slot and o.culled)


def score(
    prior: float,
    slot: int,
    blueprint_id: str,
    outcomes: tuple[Outcome, ...],
    prior_trials: float,
    exploration_bonus: float,
) -> Score:
    here = [o.reward for o in outcomes if o.blueprint_id == blueprint_id and o.slot == slot]
    elsewhere = [o.reward for o in outcomes if o.blueprint_id == blueprint_id and o.slot != slot]
    weight = len(here) + ELSEWHERE_WEIGHT * len(elsewhere)
    mean = (prior * prior_trials + sum(here) + ELSEWHERE_WEIGHT * sum(elsewhere)) / (prior_trials + weight)
    bonus = exploration_bonus * math.sqrt(math.log1p(len(outcomes)) / (1.0 + weight))
    return Score(mean + bonus, mean, bonus, len(here), len(elsewhere))
