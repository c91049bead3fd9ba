"""The reward, in one place. Everything Simic optimises is defined here; the constants are `RewardConfig`
(recorded with every training run).

An episode is one run; a transition is one decision (t = 0 … T−1) and what followed until the next one.

    r_t = shaping_t − cull_penalty·[t issued a cull] − rollback_penalty·[a rollback voided what followed t]
          + [t = T−1] · (final_accuracy − parameter_rent · doublings)

- `final_accuracy`: the run's last validation accuracy (fraction 0…1). Validation data only: the test
  accuracy that EpochCompleted and RunCompleted also carry never enters a reward.
- `doublings` = log2(final parameters / the host's parameters at the first epoch): the rent is paid per
  doubling of the model, so hosts of every size pay alike and each further graft pays for the size it adds
  to the model it finds (a third residual block on a host already grown fivefold costs less than the first).
  Parameters are the last EpochCompleted's, seeds still in flight included: a graft the run's end tears
  down was still paid for.
- The price, `parameter_rent` = 0.01 per doubling: growth pays when it buys more than 1 point of
  validation accuracy per doubling of the model, the low end of what the episodes' grafts bought. On the
  held-out digits task (cnn-lite 2/6, 384 parameters; `esper run` and `esper bench learning`, 2026-12-06):
  at 12 epochs the heuristic's one fossilized residual block (BP009, +1750, 2.47 doublings) raised the
  final validation accuracy of seed 900000 from 0.777 (controller noop) to 0.866, 3.6 points per doubling;
  at 16 epochs its three blocks (+4094 on 3 seeds, +2344 on 2; 3.26 doublings on average) raised it by
  2.5 points on average over 5 seeds (0.77 per doubling; test accuracy 0.875 → 0.915). At this price the
  heuristic's growth is about break-even and only growth that buys more than it does is rewarded; at
  0.02 the +4 test points of the heuristic's growth would count as a loss. The earlier price, 0.05 per
  100 % of relative growth, charged the first block above 0.23 for its 0.09: on hosts of a few hundred
  parameters no graft could ever pay, and the learned policy learned never to grow.
- shaping_t = `shaping` · (γ Φ(s_{t+1}) − Φ(s_t)) with Φ(s) = the validation accuracy at the decision and
  Φ(terminal) = 0: potential-based (Ng, Harada and Russell, 1999), so it moves credit earlier without
  changing which policy is optimal; 0 turns it off.
- A cull's penalty is attached to the decision that issued it, a rollback's to the last decision it
  voided (`experience` keeps that one transition and drops the rest): each penalty reaches exactly one
  transition, and the reward is never paid for anything a rollback undid.

Farming is prevented by the action masks (Tamiyo's eligibility rules), not by tuning these constants.
`RewardComponents` are the terms of one transition; they add up to its `total`, and `episode_summary`
sums them per episode for the training log.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class RewardConfig:
    parameter_rent: float = 0.01  # reward lost per doubling of the host's parameters (module doc)
    shaping: float = 1.0  # weight of the potential-based shaping term (0: off)
    gamma: float = 0.99  # the discount of the shaping term: the PPO discount
    cull_penalty: float = 0.01
    rollback_penalty: float = 0.05

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class StepOutcome:
    validation_accuracy: float  # at the decision (Φ of its state)
    culled: bool = False
    rolled_back: bool = False


@dataclass(frozen=True)
class EpisodeOutcome:
    final_validation_accuracy: float
    base_parameters: int
    final_parameters: int

    @property
    def doublings(self) -> float:
        return math.log2(max(self.final_parameters, 1) / max(self.base_parameters, 1))


@dataclass(frozen=True)
class RewardComponents:
    accuracy: float = 0.0
    parameter_rent: float = 0.0
    shaping: float = 0.0
    cull_penalty: float = 0.0
    rollback_penalty: float = 0.0

    @property
    def total(self) -> float:
        return sum(getattr(self, f.name) for f in fields(self))

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "total": self.total}


def episode_rewards(
    steps: Sequence[StepOutcome], outcome: EpisodeOutcome, config: RewardConfig
) -> list[RewardComponents]:
    """The reward components of each transition of one episode (empty for an episode without decisions)."""
    rewards = []
    last = len(steps) - 1
    for t, step in enumerate(steps):
        following = steps[t + 1].validation_accuracy if t < last else 0.0
        terminal = t == last
        rewards.append(
            RewardComponents(
                accuracy=outcome.final_validation_accuracy if terminal else 0.0,
                parameter_rent=-config.parameter_rent * outcome.doublings if terminal else 0.0,
                shaping=config.shaping * (config.gamma * following - step.validation_accuracy),
                cull_penalty=-config.cull_penalty if step.culled else 0.0,
                rollback_penalty=-config.rollback_penalty if step.rolled_back else 0.0,
            )
        )
    return rewards


def episode_summary(rewards: Sequence[RewardComponents]) -> dict[str, float]:
    """Each component summed over an episode, and the total (they add up)."""
    summary = {f.name: 0.0 for f in fields(RewardComponents)}
    for reward in rewards:
        for name in summary:
            summary[name] += getattr(reward, name)
    summary["total"] = sum(summary.values())
    return summary


def run_return(outcome: EpisodeOutcome, culls: int, rollbacks: int, config: RewardConfig) -> float:
    """A whole run's reward without the shaping term: what the validation gate and `esper bench learning`
    compare policies by. Potential-based shaping only moves credit between decisions, so leaving it out
    changes no policy's ranking, and it lets runs without recorded decisions (the heuristic) be scored."""
    return (
        outcome.final_validation_accuracy
        - config.parameter_rent * outcome.doublings
        - config.cull_penalty * culls
        - config.rollback_penalty * rollbacks
    )
