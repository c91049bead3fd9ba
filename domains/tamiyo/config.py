"""The heuristic policy's own configuration: its knobs, never the lifecycle's limits (those reach it on
`Observation.lifecycle`, from `ControllerContext.lifecycle`). RunStarted records it as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from domains.tamiyo.risk import FLOORS, RiskThresholds


@dataclass(frozen=True)
class HeuristicConfig:
    seed: int = 0
    plateau_window: int = 1
    plateau_epsilon: float = 0.5  # relative improvement of the best validation loss that is progress
    germination_cooldown_epochs: int = 1
    max_concurrent_seeds: int = 3
    parameter_budget: int | None = None  # max trainable parameters of host + seeds
    max_blueprint_risk: float = 0.5
    mitigated_blueprint_risk: float = 0.25  # cap at risk levels 1–2 and in conservative mode
    use_catalogue_metadata: bool = True
    risk_aversion: float = 0.5
    mitigated_alpha_ramp_epochs: int = 6  # ramp at risk levels 1–2 (never faster than the lifecycle's)
    # Blueprint choice learns from the run's outcomes (outcomes.py): the catalogue prior's weight in
    # pseudo-trials, and the optimism given to blueprints tried less.
    outcome_prior_trials: float = 2.0
    exploration_bonus: float = 0.5
    advance_seeds: bool = False
    exploration_epsilon: float = 0.0  # > 0: ε-exploration over legal actions (domains/tamiyo/exploration.py)
    # The learned policy (domains/tamiyo/gnn/policy.py) takes its most probable legal action instead of
    # drawing one: held-out evaluation and the validation gate; training episodes sample
    greedy: bool = False
    block_level: int = 3
    rollback_level: int = 4
    conservative_enter_level: int = 3
    conservative_exit_level: int = 1
    conservative_exit_windows: int = 3
    observation_window: int = 3
    # A germination's report closes when its seed reaches FOSSILIZED or is culled, or after this many
    # epochs: it describes what the graft caused, not the first epochs in which the host is untouched.
    germination_report_epochs: int = 20
    success_accuracy_delta: float = 0.002
    regression_accuracy_delta: float = -0.002
    command_deadline_ms: int = 5_000
    thresholds: RiskThresholds = field(default_factory=RiskThresholds)

    def __post_init__(self) -> None:
        if self.plateau_window < 1 or self.observation_window < 1 or self.germination_report_epochs < 1:
            raise ValueError("plateau_window, observation_window and germination_report_epochs must be >= 1")
        if self.outcome_prior_trials <= 0 or self.exploration_bonus < 0:
            raise ValueError("outcome_prior_trials must be > 0 and exploration_bonus >= 0")
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
        thresholds: dict[str, Any] = {
            name: levels if name in FLOORS else tuple(levels)
            for name, levels in values.pop("thresholds").items()
        }
        return cls(**values, thresholds=RiskThresholds(**thresholds))
