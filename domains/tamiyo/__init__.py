"""Tamiyo: the controller that decides when, where and what to grow, and reports how it turned out.

- `TamiyoController(run_id, signer, policy=HeuristicPolicy(config), decision_timeout_s=2.0,
  parameter_estimator=..., slot_kinds=...)` implements Tolaria's `Controller` protocol
  (leyline/controller.py): `decide(packet, context) -> ControllerOutput(events, signed command)`,
  `enter_conservative_mode(reason, epoch)`, `state_dict()` / `load_state_dict()`.
- `HeuristicPolicy(HeuristicConfig(...))`: the pure baseline policy, `decide(state, observation)`.
- `domains.tamiyo.risk`: the risk engine (signals → level 0–4, hysteresis, actions).
- `domains.tamiyo.state`: `TamiyoState` and `evolve(state, payload)` over Tamiyo's own events.
- `config` (HeuristicConfig, `to_json`/`from_json` for RunStarted.controller_config_json), `observation`
  (what a decision sees; the lifecycle limits arrive on `Observation.lifecycle`, the run's last epoch on
  `Observation.run_epochs`, judged by Kasmina's own `run_ending` rule), `policy` (the choice and its
  commands), `reports` (field reports), `catalogue`, `metrics`.
"""

from domains.tamiyo.config import HeuristicConfig
from domains.tamiyo.controller import ParameterEstimator, Policy, TamiyoController
from domains.tamiyo.observation import Observation
from domains.tamiyo.policy import HeuristicPolicy
from domains.tamiyo.risk import RiskSignals, RiskThresholds, assess
from domains.tamiyo.state import TamiyoState, evolve

__all__ = [
    "HeuristicConfig",
    "HeuristicPolicy",
    "Observation",
    "ParameterEstimator",
    "Policy",
    "RiskSignals",
    "RiskThresholds",
    "TamiyoController",
    "TamiyoState",
    "assess",
    "evolve",
]
