"""esper bench growth in miniature: four arms on digits with a tiny budget write every result name, the
run list and the PNG beside the JSON; the same-size arm is sized from the grown run of its seed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ops.bench import BenchOptions, seed_bootstrap
from ops.bench._growth_tasks import ARMS, TASKS, closest_widths, host_parameters
from ops.bench.growth import gap_closed, gap_closed_of, grown_versus_same_size, robustness, run
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


# Fashion-MNIST's four arms on 2026-12-07 (esper bench growth --tasks fashion_mnist, seeds 0-4)
FASHION = {
    "small": [0.8829, 0.8806, 0.8869, 0.8806, 0.8896],
    "grown": [0.8978, 0.8941, 0.8965, 0.8927, 0.8971],
    "same_size": [0.9067, 0.9009, 0.904, 0.9065, 0.8968],
    "big": [0.9089, 0.9076, 0.9081, 0.9063, 0.8893],
}


def test_a_target_met_on_the_means_says_how_often_other_seeds_would_meet_it() -> None:
    assert gap_closed_of(FASHION) == pytest.approx(0.5783, abs=1e-4)  # met on these seeds' means...
    assert grown_versus_same_size(FASHION) == pytest.approx(0.0025, abs=1e-4)
    boot = seed_bootstrap(FASHION, gap_closed_of)
    share = boot.share(lambda gap: gap >= 0.5)
    assert 0.3 < share < 0.6 and boot.low < 0.5 < boot.high  # ...but not by most resamples of them
    assert "the target holds in" in robustness(FASHION, gap_closed_of, lambda gap: gap >= 0.5)


def test_the_seed_bootstrap_is_seeded_and_a_figure_without_spread_stays_put() -> None:
    steady = {"small": [0.9] * 5, "grown": [0.95] * 5, "same_size": [0.94] * 5, "big": [0.99] * 5}
    boot = seed_bootstrap(steady, grown_versus_same_size, resamples=200)
    assert boot.low == boot.high == pytest.approx(0.01) and boot.share(lambda m: m >= 0) == 1.0
    again = seed_bootstrap(FASHION, gap_closed_of, resamples=300)
    assert again == seed_bootstrap(FASHION, gap_closed_of, resamples=300)


def test_undefined_resamples_do_not_meet_a_target() -> None:
    boot = seed_bootstrap({"small": [0.9, 0.91]}, lambda arms: math.nan, resamples=50)
    assert math.isnan(boot.low) and boot.share(lambda figure: True) == 0.0


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
