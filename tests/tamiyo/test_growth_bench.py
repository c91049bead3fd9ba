"""esper bench growth in miniature: four arms on digits with a tiny budget write every result name, the
run list and the PNG beside the JSON; the same-size arm is sized from the grown run of its seed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ops.bench import BenchOptions
from ops.bench._growth_tasks import ARMS, TASKS, closest_widths, host_parameters
from ops.bench.growth import gap_closed, run
from ops.errors import UsageError

PER_TASK = [
    f"digits_{arm}_{figure}" for arm in ARMS for figure in ("test_acc", "spread", "params", "wall_s")
] + ["digits_graft_exact_fraction", "digits_gap_closed"]


def test_the_big_hosts_have_10_to_50_times_the_small_hosts_parameters() -> None:
    shapes = {"digits": ((1, 8, 8), 10), "fashion_mnist": ((1, 28, 28), 10), "austen": ((32,), 6)}
    for name, (shape, classes) in shapes.items():
        task = TASKS[name]
        ratio = host_parameters(task, shape, classes, task.big) / host_parameters(task, shape, classes, {})
        assert 10 <= ratio <= 50, (name, ratio)


def test_the_same_size_host_is_the_closest_width_to_the_grown_count() -> None:
    task = TASKS["digits"]
    options, count = closest_widths(task, (1, 8, 8), 10, 1350)
    assert abs(count - 1350) < 60 and host_parameters(task, (1, 8, 8), 10, options) == count


def test_the_gap_closed_is_the_grown_share_of_a_gap_larger_than_the_noise() -> None:
    acc = {"small": 0.90, "grown": 0.93, "big": 0.96}
    gap, note = gap_closed(acc, {"small": 0.01, "grown": 0.02, "big": 0.02})
    assert gap == pytest.approx(0.5) and note is None


@pytest.mark.parametrize(
    ("big", "big_spread", "small_spread"),
    [
        (0.9003, 0.004, 0.002),  # austen's case: big - small 0.0003 inside the noise (the ratio was 151.6)
        (0.92, 0.03, 0.01),  # inside the big arm's spread
        (0.93, 0.01, 0.05),  # inside the small arm's spread
        (0.89, 0.0, 0.0),  # the big arm lost
        (0.9, 0.0, 0.0),  # no gap at all
        (0.95, math.nan, 0.01),  # an arm without seeds
    ],
)
def test_the_gap_closed_is_undefined_when_big_minus_small_is_within_the_larger_spread(
    big: float, big_spread: float, small_spread: float
) -> None:
    acc = {"small": 0.9, "grown": 0.9455, "big": big}
    gap, note = gap_closed(acc, {"small": small_spread, "grown": 0.0, "big": big_spread})
    assert math.isnan(gap)
    assert note is not None and note.startswith("undefined: big - small") and "larger spread" in note


def test_an_unknown_task_is_a_usage_error(tmp_path: Path) -> None:
    options = BenchOptions(quick=True, data_dir=str(tmp_path), progress=print, tasks=("cifar",))
    with pytest.raises(UsageError, match="unknown task"):
        run(options)


@pytest.mark.slow
def test_a_miniature_bench_writes_every_result_and_the_png(tmp_path: Path) -> None:
    options = BenchOptions(
        quick=True, data_dir=str(tmp_path), progress=lambda _: None, tasks=("digits",), seeds=2
    )
    results = {r.name: r for r in run(options)}
    assert set(PER_TASK) <= set(results)
    assert results["digits_small_params"].value < results["digits_big_params"].value
    document = json.loads((tmp_path / "bench" / "growth.json").read_text())
    assert [r["name"] for r in document["results"]] == [r for r in results]
    assert sorted((r["arm"], r["seed"]) for r in document["runs"]) == sorted(
        (a, s) for a in ARMS for s in (0, 1)
    )
    png = tmp_path / "bench" / "growth.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
