"""esper bench growth in miniature: four arms on digits with a tiny budget write every result name, the
run list and the PNG beside the JSON; the same-size arm is sized from the grown run of its seed."""

from __future__ import annotations

import json
import math
import statistics
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
    arms = {"small": [0.89, 0.90, 0.91], "grown": [0.92, 0.93, 0.94], "big": [0.95, 0.96, 0.97]}
    gap, note = gap_closed(arms)
    assert gap == pytest.approx(0.5) and note is None


@pytest.mark.parametrize(
    ("small", "big"),
    [
        # austen's case: big - small 0.0003 inside the seeds' noise (the ratio was 151.6)
        ([0.899, 0.901, 0.900], [0.8983, 0.9023, 0.9003]),
        ([0.90, 0.90, 0.90], [0.89, 0.92, 0.95]),  # 1.2 standard errors: inside the big arm's noise
        ([0.85, 0.90, 0.95], [0.93, 0.93, 0.93]),  # 1.0 standard error: inside the small arm's noise
        ([0.90, 0.90], [0.89, 0.89]),  # the big arm lost
        ([0.90, 0.90], [0.90, 0.90]),  # no gap at all
        ([0.90, 0.91], [0.95]),  # one seed: no standard error
        ([0.90, 0.91], []),  # an arm without seeds
    ],
)
def test_the_gap_closed_is_undefined_when_big_minus_small_is_within_two_standard_errors(
    small: list[float], big: list[float]
) -> None:
    gap, note = gap_closed({"small": small, "grown": [0.9455] * 3, "big": big})
    assert math.isnan(gap)
    assert note is not None and note.startswith("undefined: big - small") and "standard errors" in note


def test_more_seeds_firm_up_a_gap_that_their_spread_would_call_noise() -> None:
    """Fashion-MNIST, 10 seeds (2026-12-08): big - small is inside the big arm's max - min, which grows as
    seeds are added, and 6.9 standard errors above zero, which is what the ratio needs."""
    big, small = FASHION_10["big"], FASHION_10["small"]
    assert statistics.fmean(big) - statistics.fmean(small) < max(big) - min(big)
    assert gap_closed_of(FASHION_10) == pytest.approx(0.7047, abs=1e-4)


# Fashion-MNIST's four arms on 2026-12-07 (esper bench growth --tasks fashion_mnist, seeds 0-4)
FASHION = {
    "small": [0.8829, 0.8806, 0.8869, 0.8806, 0.8896],
    "grown": [0.8978, 0.8941, 0.8965, 0.8927, 0.8971],
    "same_size": [0.9067, 0.9009, 0.904, 0.9065, 0.8968],
    "big": [0.9089, 0.9076, 0.9081, 0.9063, 0.8893],
}
# the same, seeds 0-9 (2026-12-08)
FASHION_10 = {
    "small": [0.8827, 0.8797, 0.8869, 0.8816, 0.89, 0.8875, 0.8867, 0.8754, 0.884, 0.8902],
    "grown": [0.8999, 0.8973, 0.8973, 0.8931, 0.8964, 0.899, 0.8964, 0.8946, 0.8981, 0.8967],
    "same_size": [0.9068, 0.8992, 0.9031, 0.9044, 0.8973, 0.9045, 0.9041, 0.9018, 0.9041, 0.905],
    "big": [0.9097, 0.9052, 0.9074, 0.9073, 0.8892, 0.902, 0.9019, 0.8962, 0.9067, 0.8952],
}


def test_a_target_met_on_the_means_says_how_often_other_seeds_would_meet_it() -> None:
    assert gap_closed_of(FASHION) == pytest.approx(0.5783, abs=1e-4)  # met on these seeds' means...
    assert grown_versus_same_size(FASHION) == pytest.approx(0.0025, abs=1e-4)
    boot = seed_bootstrap(FASHION, gap_closed_of)
    share = boot.share(lambda gap: gap >= 0.5)
    assert 0.6 < share < 0.9 and boot.low < 0.5 < boot.high  # ...and by most resamples, not all of them
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
