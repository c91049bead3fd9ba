"""`esper bench run`'s overhead figures: measured side by side, and fashion-mnist reported as not measured
(with the reason) where its loader or its data is missing."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from domains.tolaria.config import RunConfig
from domains.tolaria.data import BUILTIN_DATASETS, Splits
from eventstore import open_store
from leyline.datadir import DataDir
from ops.bench import BenchOptions, median_interval
from ops.bench import run as bench_run
from ops.bench._default_run import DEFAULT_RUN_TARGET_S, default_run
from ops.compose import new_run


def options(tmp_path: Path) -> BenchOptions:
    return BenchOptions(quick=True, data_dir=str(tmp_path), progress=lambda message: None)


def test_overhead_alternates_the_full_and_the_plain_loop_and_which_goes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = DataDir(tmp_path)
    store = open_store(data_dir.log)
    ran: list[str] = []
    try:
        trainer = new_run(store, data_dir, RunConfig(epochs=4, seed=0, controller="noop"), "rbench")
        plain = bench_run.PlainLoop(trainer)
        for name, loop in (("full", trainer), ("plain", plain)):

            def recorded(epoch: Any = loop.run_epoch, name: str = name) -> Any:
                ran.append(name)
                return epoch()

            monkeypatch.setattr(loop, "run_epoch", recorded)
        wall, cpu, flush_share, hooks = bench_run.overhead(trainer, plain, 3, 1)
        trainer.sink.close()
    finally:
        store.close()
    assert ran == ["full", "plain", "plain", "full", "full", "plain"]
    assert len(wall) == len(cpu) == 3 and min(wall) > 0 and min(cpu) > 0 and len(hooks) == 3
    assert len(flush_share) == 3 and all(0 < share < 1 for share in flush_share)
    assert trainer.epoch == 3


def test_an_overhead_result_reports_its_median_with_an_interval() -> None:
    result = bench_run.overhead_result("r", [1.3, 1.0, 1.1, 1.2, 0.9, 1.05, 1.15, 1.25, 0.95], 1.05)
    assert result.value == pytest.approx(1.1) and result.met is False
    assert result.note == "median of 9 block ratios, 96% interval [0.950, 1.250]"


def test_an_overhead_over_processes_pools_their_blocks_and_bounds_the_processes_medians() -> None:
    ratios = [[1.0, 1.1, 1.2], [1.3, 1.4, 1.5], [0.9, 1.05, 1.06]]
    result = bench_run.processes_result("r", ratios, 1.05)
    assert result.value == pytest.approx(1.1) and result.met is False  # the median of all nine blocks
    assert result.note == (
        "median of 9 block ratios in 3 processes, the processes' medians 1.100, 1.400, 1.050: "
        "75% interval [1.050, 1.400]"
    )


def test_the_overhead_is_measured_in_each_of_the_processes() -> None:
    measured = bench_run.overhead_in_processes(2, 1, 1)
    assert len(measured) == 2
    for process in measured:
        assert len(process.wall) == len(process.cpu) == len(process.hooks) == 1 and process.wall[0] > 0


def test_the_median_interval_has_its_binomial_coverage() -> None:
    assert median_interval([3.0, 1.0, 2.0]) == (1.0, 3.0, 0.75)  # three samples: the range
    low, high, coverage = median_interval([float(i) for i in range(20)])
    assert (low, high) == (5.0, 14.0) and coverage == pytest.approx(0.9586, abs=1e-4)


def test_fashion_is_not_measured_without_its_loader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(BUILTIN_DATASETS, bench_run.FASHION, raising=False)
    result = bench_run.fashion_overhead(options(tmp_path), DataDir(tmp_path))
    assert result.name == "epoch_overhead_ratio_fashion" and math.isnan(result.value) and result.met is None
    assert result.note is not None and result.note.startswith("not measured: this build has no fashion-mnist")


def test_fashion_is_not_measured_when_its_data_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(seed: int, options: Mapping[str, Any]) -> Splits:
        raise FileNotFoundError("no train-images-idx3-ubyte in /nowhere\nsecond line")

    monkeypatch.setitem(BUILTIN_DATASETS, bench_run.FASHION, missing)
    result = bench_run.fashion_overhead(options(tmp_path), DataDir(tmp_path))
    assert math.isnan(result.value) and result.met is None
    assert (
        result.note
        == "not measured: fashion-mnist could not be loaded: no train-images-idx3-ubyte in /nowhere"
    )


def test_fashion_reports_its_blocks_interval_and_cpu_ratio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(BUILTIN_DATASETS, bench_run.FASHION, BUILTIN_DATASETS["digits"])  # a small stand-in
    result = bench_run.fashion_overhead(options(tmp_path), DataDir(tmp_path))
    assert result.name == "epoch_overhead_ratio_fashion" and result.value > 0 and result.met is not None
    assert result.note is not None and result.note.startswith("median of 3 block ratios, 75% interval")
    assert "; in CPU time median " in result.note
    low, _, coverage = median_interval([float(i) for i in range(bench_run.FASHION_BLOCKS)])
    assert coverage >= 0.9 and low > 0  # the full bench's blocks reach the interval's coverage


@pytest.mark.slow
def test_the_default_run_figure_times_esper_run_beside_the_noop_controller(tmp_path: Path) -> None:
    result = default_run(options(tmp_path))
    assert result.name == "default_run_s" and result.baseline_name == "default_run_noop_s"
    assert result.value > 0 and result.baseline is not None and result.baseline > 0
    assert result.note is not None and ("FOSSILIZED" in result.note or "CULLED" in result.note)
    assert result.met is (result.value <= DEFAULT_RUN_TARGET_S)  # the lifecycle part holds, as the note shows
