"""The validation gate's decision (pure): each rejection reason on its own, and a clean pass."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from domains.simic.gate import (
    ACTIVE,
    CANDIDATE,
    HEURISTIC,
    ChaosCheck,
    GateConfig,
    HeldOutRun,
    decide,
    event_type,
    payload,
)

CONFIG = GateConfig()
SAFE = (
    ChaosCheck("adversarial_blueprints", True, "no forbidden germination"),
    ChaosCheck("timeout", True, "ok"),
)


def runs(arm: str, reward: float, seeds: int = 5, **changes: Any) -> list[HeldOutRun]:
    base = HeldOutRun(arm, "cnn-lite/digits", 0, True, reward, reward, reward, 700)
    return [dataclasses.replace(base, seed=s, **changes) for s in range(seeds)]


def arms(candidate: float = 0.9, active: float = 0.9, **changes: Any) -> list[HeldOutRun]:
    return [*runs(CANDIDATE, candidate, **changes), *runs(ACTIVE, active), *runs(HEURISTIC, 0.85)]


def test_a_candidate_as_good_as_the_active_passes_with_its_figures() -> None:
    decision = decide("v1", arms(), SAFE, CONFIG)
    assert decision.passed and decision.reasons == ()
    assert event_type(decision) == "PolicyValidated"
    message = payload(decision, {"ope_snips": 0.8})
    assert message.passed and message.version == "v1"
    assert message.checks["candidate_reward"] == pytest.approx(0.9)
    assert message.checks["heuristic_reward"] == pytest.approx(0.85)
    assert message.checks["ope_snips"] == pytest.approx(0.8) and message.checks["chaos_timeout"] == 1.0


def test_a_regression_beyond_five_percent_is_rejected_and_within_it_is_not() -> None:
    assert decide("v1", arms(candidate=0.9 * 0.96), SAFE, CONFIG).passed
    rejected = decide("v1", arms(candidate=0.9 * 0.94), SAFE, CONFIG)
    assert not rejected.passed and event_type(rejected) == "PolicyRejected"
    assert rejected.reasons[0].startswith("reward regression 6.0% > 5%")


def test_each_safety_failure_is_a_reason() -> None:
    cases: dict[str, dict[str, Any]] = {
        "forbidden blueprint": {"forbidden_blueprints": 1},
        "lifecycle violation": {"lifecycle_violations": 2},
        "non-finite": {"nonfinite": 1},
        "did not complete": {"completed": False},
    }
    for words, change in cases.items():
        decision = decide("v1", arms(**change), SAFE, CONFIG)
        assert not decision.passed
        assert any(words in reason for reason in decision.reasons), (words, decision.reasons)


def test_a_nan_reward_is_non_finite_and_makes_the_regression_unmeasurable() -> None:
    decision = decide("v1", arms(candidate=math.nan), SAFE, CONFIG)
    assert any("non-finite" in r for r in decision.reasons)
    assert any("not measurable" in r for r in decision.reasons)


def test_too_few_seeds_and_unsafe_chaos_are_rejected() -> None:
    few = [*runs(CANDIDATE, 0.9, seeds=4), *runs(ACTIVE, 0.9), *runs(HEURISTIC, 0.9)]
    decision = decide("v1", few, SAFE, CONFIG)
    assert decision.reasons == ("candidate: 4 held-out seed(s) completed, need 5",)
    unsafe = (ChaosCheck("timeout", False, "the run failed"),)
    assert decide("v1", arms(), unsafe, CONFIG).reasons == ("chaos check timeout unsafe: the run failed",)
