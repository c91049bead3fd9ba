"""The loss-explosion guard's rule: non-finite, or above both factor × the recent mean and an absolute floor
(nats). A relative jump of a near-zero training loss (0.002 → 0.07 late in an 80-epoch digits run) is noise
that the guard used to roll back, replay identically and fail the run on."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domains.tolaria.config import ConfigError, RunConfig, build_config
from domains.tolaria.rollback import exploded

CONFIG = RunConfig()
losses = st.floats(min_value=0.0, max_value=1e3, allow_nan=False, allow_infinity=False)
histories = st.lists(st.floats(min_value=1e-6, max_value=1e3), min_size=1, max_size=CONFIG.loss_window)


@given(st.floats(min_value=0.0, max_value=CONFIG.loss_explosion_floor), histories)
def test_a_loss_at_or_below_the_floor_never_explodes(loss: float, recent: list[float]) -> None:
    assert not exploded(loss, recent, CONFIG)


@given(histories, st.floats(min_value=1.0001, max_value=1e3))
def test_above_the_floor_the_relative_rule_decides(recent: list[float], over: float) -> None:
    mean = sum(recent) / len(recent)
    loss = over * max(CONFIG.loss_explosion_factor * mean, CONFIG.loss_explosion_floor)
    assert exploded(loss, recent, CONFIG)
    calm = min(CONFIG.loss_explosion_factor * mean, 1e3)
    assert not exploded(calm, recent, CONFIG)  # at most factor × mean is no explosion, whatever the floor


@given(st.lists(losses, max_size=CONFIG.loss_window), st.sampled_from([math.inf, -math.inf, math.nan]))
def test_a_non_finite_loss_always_explodes(recent: list[float], loss: float) -> None:
    assert exploded(loss, recent, CONFIG)


def test_the_late_spike_of_a_fitted_digits_host_is_not_an_explosion() -> None:
    """Epochs 44–47 of `esper run --epochs 80 --seed 0` with the growth defaults (measured)."""
    recent = [0.002, 0.002, 0.002, 0.002, 0.002]
    assert not exploded(0.072, recent, CONFIG)
    assert exploded(0.072, recent, build_config({"loss_explosion_floor": 0.0}))


@pytest.mark.parametrize("floor", [-0.1, math.inf, math.nan])
def test_the_floor_is_a_finite_non_negative_number(floor: float) -> None:
    with pytest.raises(ConfigError, match="loss_explosion_floor"):
        build_config({"loss_explosion_floor": floor})
