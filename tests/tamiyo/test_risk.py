"""Risk engine: monotone in every signal, hysteresis over 3 windows, actions by level."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domains.tamiyo.risk import (
    MAX_LEVEL,
    RiskAction,
    RiskSignals,
    RiskThresholds,
    action_for,
    assess,
    effective_level,
    from_pb_level,
    lifecycle_signal,
    to_pb_level,
)
from leyline import pb

SIGNAL_NAMES = [f.name for f in dataclasses.fields(RiskSignals)]
values = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)
signals = st.builds(RiskSignals, **{name: values for name in SIGNAL_NAMES})
THRESHOLDS = RiskThresholds()


@settings(max_examples=300)
@given(signals, st.sampled_from(SIGNAL_NAMES), values)
def test_level_is_monotone_in_each_signal(base: RiskSignals, name: str, bigger_by: float) -> None:
    raised = dataclasses.replace(base, **{name: getattr(base, name) + bigger_by})
    assert assess(raised, THRESHOLDS).level >= assess(base, THRESHOLDS).level


@settings(max_examples=200)
@given(signals, st.sampled_from(SIGNAL_NAMES))
def test_a_non_finite_signal_is_critical(base: RiskSignals, name: str) -> None:
    for bad in (math.inf, math.nan):
        assessment = assess(dataclasses.replace(base, **{name: bad}), THRESHOLDS)
        assert assessment.level == MAX_LEVEL
        assert assessment.signal_levels[name] == MAX_LEVEL


def test_each_signal_alone_reaches_every_level() -> None:
    for name in SIGNAL_NAMES:
        thresholds = getattr(THRESHOLDS, name)
        seen = []
        for value in (0.0, *thresholds):
            assessment = assess(dataclasses.replace(RiskSignals(), **{name: value}), THRESHOLDS)
            seen.append(assessment.signal_levels[name])
        assert seen == [0, 1, 2, 3, 4], name
    calm = assess(RiskSignals(), THRESHOLDS)
    assert calm.level == 0


def test_loss_explosion_of_15x_is_critical_and_requests_rollback() -> None:
    assessment = assess(RiskSignals(loss_explosion=15.0), THRESHOLDS)
    assert assessment.level == 4
    assert assessment.dominant == "loss_explosion"
    assert assessment.loss_level == 4
    assert action_for(assessment.level, assessment.loss_level) is RiskAction.ROLLBACK


@given(st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=20))
def test_hysteresis_rises_at_once_and_falls_after_three_windows(levels: list[int]) -> None:
    for end in range(1, len(levels) + 1):
        effective = effective_level(levels[:end])
        assert effective >= levels[end - 1]  # rises at once
        assert effective == max(levels[max(0, end - 3) : end])  # a peak lasts exactly 3 windows


def test_hysteresis_sequence() -> None:
    raw = [0, 3, 0, 0, 0, 1]
    assert [effective_level(raw[: i + 1]) for i in range(len(raw))] == [0, 3, 3, 3, 0, 1]


def test_actions_by_level() -> None:
    assert [action_for(level, loss_level=0) for level in range(5)] == [
        RiskAction.PROCEED,
        RiskAction.MITIGATE,
        RiskAction.MITIGATE,
        RiskAction.BLOCK,
        RiskAction.BLOCK,  # critical, but not the loss: hold still, do not throw epochs away
    ]
    assert action_for(2, loss_level=4) is RiskAction.ROLLBACK
    spike = assess(RiskSignals(grad_norm_ratio=1e5), THRESHOLDS)
    assert spike.level == 4 and action_for(spike.level, spike.loss_level) is RiskAction.BLOCK


def test_pb_level_round_trip() -> None:
    assert pb.RiskLevel.Name(to_pb_level(0)) == "RISK_LEVEL_GREEN"
    assert pb.RiskLevel.Name(to_pb_level(4)) == "RISK_LEVEL_CRITICAL"
    assert [from_pb_level(to_pb_level(level)) for level in range(5)] == list(range(5))


def test_lifecycle_signal_weighs_active_stages_risk_and_violations() -> None:
    dormant = pb.SeedState(slot=0, stage=pb.SEED_STAGE_DORMANT)
    blending = pb.SeedState(slot=1, stage=pb.SEED_STAGE_BLENDING, risk=0.3)
    assert lifecycle_signal([dormant]) == 0.0
    assert lifecycle_signal([dormant, blending]) == pytest.approx(1.3)
    violating = pb.SeedState(slot=2, stage=pb.SEED_STAGE_TRAINING, metrics={"isolation_violations": 2.0})
    assert lifecycle_signal([violating]) == pytest.approx(0.5 + 2.0)
    exploding = pb.SeedState(slot=3, stage=pb.SEED_STAGE_TRAINING, gradient_norm=math.inf)
    assert lifecycle_signal([exploding]) == math.inf


def test_thresholds_must_ascend() -> None:
    with pytest.raises(ValueError, match="ascending"):
        RiskThresholds(loss_drift=(0.5, 0.1, 1.0, 2.0))
