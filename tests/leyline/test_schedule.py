"""The learning-rate schedules' factors."""

from __future__ import annotations

import itertools
import math

import pytest

from leyline.schedule import lr_factor


def test_cosine_starts_at_the_full_rate_and_falls_monotonically_over_its_span() -> None:
    factors = [lr_factor("cosine", epoch, 0, 24) for epoch in range(1, 25)]
    assert factors[0] == 1.0
    assert all(a > b for a, b in itertools.pairwise(factors))
    assert factors[12] == pytest.approx(0.5)  # epoch 13: half the span trained
    assert factors[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 23 / 24)))


def test_a_span_that_starts_late_begins_at_the_full_rate_and_clamps_outside_it() -> None:
    assert lr_factor("cosine", 11, 10, 20) == 1.0
    assert lr_factor("cosine", 5, 10, 20) == 1.0
    assert lr_factor("cosine", 40, 10, 20) == 0.0
    assert lr_factor("cosine", 3, 10, 10) == 1.0  # an empty span: nothing left to decay over


def test_constant_is_one_and_an_unknown_schedule_is_refused() -> None:
    assert lr_factor("constant", 7, 0, 24) == 1.0
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'step'"):
        lr_factor("step", 1, 0, 24)
