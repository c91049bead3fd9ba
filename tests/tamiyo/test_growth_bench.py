"""esper bench growth in miniature: four arms on digits with a tiny budget write every result name, the
run list and the PNG beside the JSON; the same-size arm is sized from the grown run of its seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops.bench import BenchOptions
from ops.bench._growth_tasks import ARMS, TASKS, closest_widths, host_parameters
from ops.bench.growth import run
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
