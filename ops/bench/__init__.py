"""Benchmarks behind `esper bench NAME`: each module here defines `run(options) -> list[Result]`.

Every result names the baseline it is compared with, measured in the same run on the same machine, so
ratios hold when the machine's speed drifts (SPEC §12).
"""

from __future__ import annotations

import importlib
import math
import os
import pkgutil
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple, Protocol

POSTGRES_URL_ENV = "ESPER_BENCH_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class Result:
    name: str
    value: float
    unit: str
    baseline_name: str | None = None
    baseline: float | None = None
    ratio: float | None = None
    target: str | None = None
    met: bool | None = None
    note: str | None = None  # e.g. why a figure was not measured (its value is then NaN)

    def to_json(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


class BenchModule(Protocol):
    DESCRIPTION: str

    def run(self, options: BenchOptions) -> list[Result]: ...


@dataclass
class BenchOptions:
    quick: bool
    data_dir: str
    progress: Callable[[str], None]
    backend: str = "file"  # the event store a bench drives, where it can drive more than one
    tasks: tuple[str, ...] = ()  # the tasks a bench runs, where it has several (growth); () = all
    seeds: int | None = None  # seeds per arm, where a bench trains several (growth); None = its default


def available() -> dict[str, str]:
    """Benchmark name → module path."""
    names = {}
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            names[info.name] = f"{__name__}.{info.name}"
    return dict(sorted(names.items()))


def load(name: str) -> BenchModule:
    module: BenchModule = importlib.import_module(available()[name])
    return module


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cpus": os.cpu_count()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        info["device"] = "cpu"
    return info


def median_us(operation: Callable[[], object], iterations: int, warmup: int = 200) -> float:
    """Median wall time of one call, in microseconds, timing calls in small groups to beat clock cost."""
    for _ in range(warmup):
        operation()
    group = 10
    samples = []
    clock = time.perf_counter_ns
    for _ in range(max(1, iterations // group)):
        start = clock()
        for _ in range(group):
            operation()
        samples.append((clock() - start) / group / 1000)
    return statistics.median(samples)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def median_interval(values: list[float], confidence: float = 0.9) -> tuple[float, float, float]:
    """A distribution-free interval for the median of independent samples (order statistics): the
    narrowest symmetric pair of sorted values whose binomial coverage reaches `confidence`, and that
    coverage (below `confidence` when there are too few samples: the range then)."""
    ordered = sorted(values)
    n = len(ordered)
    below = 0.0  # P(at most k - 1 of n samples fall under the median), for the candidate k
    k = 0
    while k + 1 <= n // 2:
        tail = below + math.comb(n, k) / 2**n
        if 1 - 2 * tail < confidence:
            break
        below, k = tail, k + 1
    low, high = (k - 1, n - k) if k else (0, n - 1)
    return ordered[low], ordered[high], 1 - 2 * below if k else 1 - 2 / 2**n


class SeedBootstrap(NamedTuple):
    """A figure computed from per-arm samples (one value per seed), over resamples of each arm's seeds with
    replacement: its percentile interval and every resample's value (NaN where it is undefined)."""

    low: float
    high: float
    figures: list[float]

    def share(self, meets: Callable[[float], bool]) -> float:
        """The share of resamples whose figure meets the target (an undefined one does not)."""
        return sum(1 for f in self.figures if not math.isnan(f) and meets(f)) / len(self.figures)


def seed_bootstrap(
    arms: Mapping[str, Sequence[float]],
    figure: Callable[[Mapping[str, Sequence[float]]], float],
    confidence: float = 0.9,
    resamples: int = 4000,
    seed: int = 0,
) -> SeedBootstrap:
    """How a figure over a few seeds per arm would move with other seeds: `figure` of `resamples`
    resamples (each arm's seeds drawn with replacement, independently), its (1 - confidence) / 2
    quantiles over the defined ones. Seeded, so the same samples give the same interval."""
    draw = random.Random(seed).choices
    figures = [
        figure({arm: draw(values, k=len(values)) for arm, values in arms.items()}) for _ in range(resamples)
    ]
    defined = sorted(f for f in figures if not math.isnan(f))
    if not defined:
        return SeedBootstrap(math.nan, math.nan, figures)
    tail = (1 - confidence) / 2
    return SeedBootstrap(
        defined[int(tail * (len(defined) - 1))], defined[round((1 - tail) * (len(defined) - 1))], figures
    )


def bootstrap_median_interval(
    values: list[float], confidence: float = 0.9, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """A percentile bootstrap interval for the median of independent samples (paired ratios, say): the
    seed bootstrap of one arm's median. Seeded, so the same samples give the same interval."""
    boot = seed_bootstrap(
        {"values": values}, lambda arms: statistics.median(arms["values"]), confidence, resamples, seed
    )
    return boot.low, boot.high
