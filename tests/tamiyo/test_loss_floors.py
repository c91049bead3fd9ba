"""Absolute floors under Tamiyo's relative loss signals: a rise of a near-zero loss smaller than the floor
(nats) is no drift and no explosion, however large its ratio; above the floor the ratios count as before."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domains.tamiyo.config import HeuristicConfig
from domains.tamiyo.observation import risk_signals
from domains.tamiyo.policy import HeuristicPolicy
from domains.tamiyo.risk import RiskThresholds
from domains.tamiyo.state import TamiyoState
from leyline import pb
from tests.tamiyo.scripted import observation
from tests.tamiyo.test_policy import command_of, decision_of, run

FLOORS = RiskThresholds()
CALM_EPOCHS = 5


def calm_then(best_training: float, best_validation: float, training: float, validation: float) -> list:
    """Five calm epochs at the best losses, then one epoch at the given losses."""
    calm = [
        observation(e, best_validation, training_loss=best_training, seeds=[]) for e in range(CALM_EPOCHS)
    ]
    return [*calm, observation(CALM_EPOCHS, validation, training_loss=training, seeds=[])]


@settings(max_examples=200, deadline=None)
@given(
    best_training=st.floats(min_value=1e-5, max_value=0.05),
    training_rise=st.floats(min_value=0.0, max_value=FLOORS.loss_explosion_floor * 0.999),
    best_validation=st.floats(min_value=1e-3, max_value=0.2),
    validation_rise=st.floats(min_value=0.0, max_value=FLOORS.loss_drift_floor * 0.999),
)
def test_a_rise_of_a_near_zero_loss_below_the_floor_is_calm(
    best_training: float, training_rise: float, best_validation: float, validation_rise: float
) -> None:
    """Without the floors: training 0.002 → 0.07 (35×) asked for a rollback, validation 0.05 → 0.12 (140 %)
    read as level 3 drift; both are the epoch-to-epoch noise of a host that fits digits."""
    policy = HeuristicPolicy(HeuristicConfig(max_concurrent_seeds=0))
    spike = calm_then(
        best_training, best_validation, best_training + training_rise, best_validation + validation_rise
    )
    _, history = run(policy, spike)
    decision = decision_of(history[-1])
    assert decision.inputs_summary["level_loss_explosion"] == 0.0
    assert decision.inputs_summary["level_loss_drift"] == 0.0
    assert decision.inputs_summary["signal_loss_drift"] == 0.0
    assert command_of(history[-1]) is None


@settings(max_examples=100, deadline=None)
@given(
    best_training=st.floats(min_value=1e-3, max_value=0.05),
    ratio=st.floats(min_value=15.01, max_value=1e4),
)
def test_an_explosion_above_the_floor_still_asks_for_a_rollback(best_training: float, ratio: float) -> None:
    training = max(best_training * ratio, best_training + FLOORS.loss_explosion_floor * 1.001)
    _, history = run(HeuristicPolicy(), calm_then(best_training, 0.1, training, 0.1))
    rollback = command_of(history[-1])
    assert rollback is not None and rollback.command_type == pb.COMMAND_TYPE_ROLLBACK
    assert decision_of(history[-1]).inputs_summary["level_loss_explosion"] == 4.0


@settings(max_examples=100, deadline=None)
@given(
    best_validation=st.floats(min_value=1e-3, max_value=0.5), ratio=st.floats(min_value=4.01, max_value=1e3)
)
def test_a_drift_above_the_floor_keeps_its_relative_level(best_validation: float, ratio: float) -> None:
    validation = max(best_validation * ratio, best_validation + FLOORS.loss_drift_floor * 1.001)
    state = TamiyoState(validation_losses=(best_validation,) * CALM_EPOCHS)
    signals = risk_signals(state, observation(CALM_EPOCHS, validation, training_loss=0.1, seeds=[]), FLOORS)
    assert signals.loss_drift == pytest.approx(validation / best_validation - 1.0)
    assert signals.loss_drift >= FLOORS.loss_drift[-1]


def test_the_floors_are_part_of_the_recorded_config() -> None:
    config = HeuristicConfig(thresholds=RiskThresholds(loss_drift_floor=0.05, loss_explosion_floor=0.5))
    restored = HeuristicConfig.from_json(config.to_json())
    assert restored == config
    assert restored.thresholds.loss_drift_floor == 0.05 and restored.thresholds.loss_explosion_floor == 0.5


@pytest.mark.parametrize("name", ["loss_drift_floor", "loss_explosion_floor"])
@pytest.mark.parametrize("value", [-0.1, float("inf"), float("nan")])
def test_a_floor_is_a_finite_non_negative_number(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=name):
        RiskThresholds(**{name: value})  # type: ignore[arg-type]
