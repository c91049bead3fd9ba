"""`default_run_s` for `esper bench run`: the wall time of `esper run` as a new user types it (digits,
defaults, a fresh data directory, so the blueprints it grafts are compiled during the run), from the
command's start to its exit, beside the same command with `--controller noop` (the same training, no
growth, nothing compiled). The two alternate, `pairs` times each; value and baseline are medians. The
note gives each run's wall and CPU time (user + sys of the command and its compile-ahead child), the load
average around it, and the seed stages the grown run ended with: the figure counts only runs that show a
whole lifecycle (a seed FOSSILIZED or CULLED)."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ops.bench import BenchOptions, Result

DEFAULT_RUN_TARGET_S = 10.0
TERMINAL = ("FOSSILIZED", "CULLED")
REPOSITORY = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Timed:
    wall_s: float
    cpu_s: float
    load: tuple[float, float]
    seeds: dict[str, int]

    def describe(self) -> str:
        return f"{self.wall_s:.1f} s ({self.cpu_s:.1f} s CPU, load {self.load[0]:.1f}->{self.load[1]:.1f})"


def timed_run(data_dir: Path, *options: str) -> Timed:
    """`esper run --json` in a child process: wall time, CPU time of its process tree, seeds by stage."""
    command = [sys.executable, "-m", "ops.cli", "run", "--data-dir", str(data_dir), "--json", *options]
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    environment.pop("ESPER_STORE_URL", None)  # the default: the file log under the data directory
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    finished = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if finished.returncode != 0:
        raise RuntimeError(f"esper run {' '.join(options)} failed: {finished.stderr.strip()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    seeds = json.loads(finished.stdout)["seeds"]
    return Timed(wall, cpu, (load, os.getloadavg()[0]), seeds)


def default_run(options: BenchOptions) -> Result:
    pairs = 1 if options.quick else 3
    grown: list[Timed] = []
    plain: list[Timed] = []
    with tempfile.TemporaryDirectory(prefix="esper-bench-default-run-") as scratch:
        for pair in range(pairs):
            options.progress(
                f"default esper run, fresh data directory, vs --controller noop ({pair + 1}/{pairs})"
            )
            grown.append(timed_run(Path(scratch) / f"grown{pair}"))
            plain.append(timed_run(Path(scratch) / f"plain{pair}", "--controller", "noop"))
    value = statistics.median(t.wall_s for t in grown)
    baseline = statistics.median(t.wall_s for t in plain)
    lifecycle = all(any(t.seeds.get(stage) for stage in TERMINAL) for t in grown)
    return Result(
        "default_run_s",
        value,
        "s",
        baseline_name="default_run_noop_s",
        baseline=baseline,
        ratio=value / baseline,
        target=f"<= {DEFAULT_RUN_TARGET_S} with a seed FOSSILIZED or CULLED",
        met=value <= DEFAULT_RUN_TARGET_S and lifecycle,
        note=(
            f"{os.cpu_count()} CPUs; esper run: {', '.join(t.describe() for t in grown)}, seeds "
            f"{'; '.join(' '.join(f'{k} {v}' for k, v in sorted(t.seeds.items())) for t in grown)}; "
            f"--controller noop: {', '.join(t.describe() for t in plain)}"
        ),
    )
