"""Blueprint pipeline: compile the whole catalogue, then fetch artifacts from Urza cold and warm.

- compile_total_s: every blueprint on every slot kind it supports, default parameters and shapes, with
  the default (export) strategy, through Tezzeret jobs in a fresh log (target < 300 s on this machine);
  compile_p50_s: the median job.
- urza_fetch_cold_ms: `SeedModuleSource.load_module` with an empty cache (read, sha256, load, fresh
  copy); urza_fetch_warm_p50_ms / _p95_ms: the same call once the artifact is cached (target < 1 ms).
- torch_load_p50_ms, the baseline: plain `torch.load` of the same module saved whole with `torch.save`.
--quick compiles 8 blueprints instead of 50 (compile_total_s then carries no target).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from domains.tezzeret.compiler import template_for
from domains.tezzeret.jobs import CompileSpec, Status
from domains.tezzeret.service import Tezzeret, catalogue_specs
from domains.urza.library import ArtifactLibrary
from domains.urza.source import SeedModuleSource
from eventstore import EventStore, open_store
from ops.bench import BenchOptions, Result, percentile

DESCRIPTION = "blueprint pipeline: compile the catalogue (export), Urza cold/warm fetch vs torch.load"
COMPILE_BUDGET_S = 300.0
WARM_BUDGET_MS = 1.0
QUICK_BLUEPRINTS = ("BP001", "BP004", "BP006", "BP009", "BP020", "BP023", "BP031", "BP045")
FETCH_BLUEPRINTS = ("BP002", "BP006", "BP009", "BP020", "BP023")


def run(options: BenchOptions) -> list[Result]:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="esper-bench-blueprints-") as directory:
        root = Path(directory)
        store = open_store(root / "log")
        try:
            return measure(options, root, store)
        finally:
            store.close()


def measure(options: BenchOptions, root: Path, store: EventStore) -> list[Result]:
    library = ArtifactLibrary(root / "artifacts", store)
    tezzeret = Tezzeret(store, library)
    specs = catalogue_specs(blueprint_ids=QUICK_BLUEPRINTS if options.quick else None)
    options.progress(f"compiling {len(specs)} jobs ({len({s.blueprint_id for s in specs})} blueprints)")
    durations = []
    started = time.perf_counter()
    for index, spec in enumerate(specs, 1):
        job_started = time.perf_counter()
        state = tezzeret.compile(spec)
        durations.append(time.perf_counter() - job_started)
        if state.status is not Status.SUCCEEDED:
            raise RuntimeError(f"compile of {spec.blueprint_id} failed: {state.last_error}")
        if index % 10 == 0:
            options.progress(f"compiled {index}/{len(specs)}")
    total = time.perf_counter() - started

    fetch_specs = [s for s in specs if s.blueprint_id in FETCH_BLUEPRINTS] or specs[:3]
    cold = [cold_fetch_ms(store, root, spec) for spec in fetch_specs]
    options.progress("warm fetches")
    source = SeedModuleSource(library, tezzeret)
    iterations = 200 if options.quick else 2000
    warm = []
    for spec in fetch_specs:
        fetch(source, spec)
        for _ in range(iterations // len(fetch_specs)):
            begin = time.perf_counter()
            fetch(source, spec)
            warm.append((time.perf_counter() - begin) * 1000)
    baseline = [torch_load_ms(root, spec) for spec in fetch_specs for _ in range(20 if options.quick else 60)]
    torch_load_p50 = statistics.median(baseline)
    warm_p50 = statistics.median(warm)

    quick_note = " (--quick: 8 blueprints)" if options.quick else ""
    return [
        Result(
            "compile_total_s",
            total,
            "s" + quick_note,
            target=None if options.quick else f"< {COMPILE_BUDGET_S:g} s",
            met=None if options.quick else total < COMPILE_BUDGET_S,
        ),
        Result("compile_p50_s", statistics.median(durations), "s"),
        Result(
            "urza_fetch_cold_ms",
            statistics.median(cold),
            "ms",
            baseline_name="torch_load_p50_ms",
            baseline=torch_load_p50,
            ratio=statistics.median(cold) / torch_load_p50,
        ),
        Result(
            "urza_fetch_warm_p50_ms",
            warm_p50,
            "ms",
            baseline_name="torch_load_p50_ms",
            baseline=torch_load_p50,
            ratio=warm_p50 / torch_load_p50,
            target=f"< {WARM_BUDGET_MS:g} ms",
            met=warm_p50 < WARM_BUDGET_MS,
        ),
        Result("urza_fetch_warm_p95_ms", percentile(warm, 0.95), "ms"),
        Result("torch_load_p50_ms", torch_load_p50, "ms"),
    ]


def fetch(source: SeedModuleSource, spec: CompileSpec) -> None:
    source.load_module(spec.blueprint_id, spec.parameter_map(), spec.slot_kind, spec.slot_shape)


def cold_fetch_ms(store: EventStore, root: Path, spec: CompileSpec) -> float:
    """A new process's first fetch: empty cache, hash looked up in the log, file read and verified."""
    library = ArtifactLibrary(root / "artifacts", store)
    source = SeedModuleSource(library, Tezzeret(store, library))
    begin = time.perf_counter()
    fetch(source, spec)
    return (time.perf_counter() - begin) * 1000


def torch_load_ms(root: Path, spec: CompileSpec) -> float:
    path = root / f"plain-{spec.job_id}.pt"
    if not path.exists():
        torch.save(template_for(spec), path)
    begin = time.perf_counter()
    torch.load(path, weights_only=False)
    return (time.perf_counter() - begin) * 1000
