"""Blueprint pipeline: compile the whole catalogue, then fetch artifacts from Urza cold and warm.

- compile_total_s: every blueprint on every slot kind it supports, default parameters and shapes, with
  the default (export) strategy, through Tezzeret jobs in a fresh log (target < 300 s on this machine);
  compile_p50_s: the median job.
- urza_fetch_cold_ms: `SeedModuleSource.load_module` with an empty cache (read, sha256, load, fresh
  copy); urza_fetch_warm_p50_ms / _p95_ms: the same call once the artifact is cached (target < 1 ms).
- torch_load_p50_ms, the baseline: plain `torch.load` of the same module saved whole with `torch.save`.
- Strategy aot_inductor:cpu on a few representative templates (one slot kind each), in a fresh inductor
  cache directory (a first compile on a new machine): aot_inductor_compile_p50_s beside the export jobs
  of the same specs; aot_inductor_compile_total_est_s, its median times the job count of compile_total_s
  (the catalogue under this strategy, estimated: measuring it would take tens of minutes); and the no-grad
  eval forward of a batch through the package (aoti_eval_forward_ms) beside the exported eval program of
  the same loaded artifact, same weights (export_eval_forward_ms), calls interleaved.
--quick compiles 8 blueprints instead of 50 (compile_total_s then carries no target) and 1 template with
AOTInductor instead of 3.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch

from domains.tezzeret.compiler import compile_artifact, template_for
from domains.tezzeret.jobs import CompileSpec, Status
from domains.tezzeret.service import Tezzeret, catalogue_specs
from domains.tezzeret.source import SeedModuleSource
from domains.urza.artifact import ArtifactModule
from domains.urza.library import ArtifactLibrary
from eventstore import EventStore, open_store
from leyline import pb
from leyline.datadir import DataDir
from ops.bench import BenchOptions, Result, percentile

DESCRIPTION = (
    "blueprint pipeline: compile the catalogue (export), Urza cold/warm fetch vs torch.load, "
    "aot_inductor:cpu compile and no-grad eval forward vs export on a few templates"
)
COMPILE_BUDGET_S = 300.0
WARM_BUDGET_MS = 1.0
QUICK_BLUEPRINTS = ("BP001", "BP004", "BP006", "BP009", "BP020", "BP023", "BP031", "BP045")
FETCH_BLUEPRINTS = ("BP002", "BP006", "BP009", "BP020", "BP023")
# residual block on feature maps, single-head attention and transformer block on sequences
AOTI_CASES = (
    ("BP009", pb.SLOT_KIND_CONV2D),
    ("BP020", pb.SLOT_KIND_SEQUENCE),
    ("BP023", pb.SLOT_KIND_SEQUENCE),
)
AOTI_STRATEGY = "aot_inductor:cpu"
EVAL_BATCH = 64


def run(options: BenchOptions) -> list[Result]:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="esper-bench-blueprints-") as directory:
        root = Path(directory)
        store = open_store(DataDir(root).log)
        try:
            return measure(options, root, store)
        finally:
            store.close()


def measure(options: BenchOptions, root: Path, store: EventStore) -> list[Result]:
    library = ArtifactLibrary(DataDir(root).artifacts, store)
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
        *aot_inductor_results(options, root, store, specs, durations, total),
    ]


def aot_inductor_results(
    options: BenchOptions,
    root: Path,
    store: EventStore,
    export_specs: list[CompileSpec],
    export_durations: list[float],
    export_total: float,
) -> list[Result]:
    cases = AOTI_CASES[:1] if options.quick else AOTI_CASES
    chosen = [
        (spec, d) for spec, d in zip(export_specs, export_durations, strict=True) if spec_case(spec) in cases
    ]
    export_same = [duration for _, duration in chosen]
    specs = [replace(spec, strategy=AOTI_STRATEGY) for spec, _ in chosen]
    library = ArtifactLibrary(DataDir(root).artifacts, store)
    compile_fn = partial(compile_artifact, inductor_dir=root / "inductor")
    tezzeret = Tezzeret(store, library, compile_fn=compile_fn)
    durations, hashes = [], []
    for spec in specs:
        options.progress(f"compiling {spec.blueprint_id} with {AOTI_STRATEGY}")
        started = time.perf_counter()
        state = tezzeret.compile(spec)
        durations.append(time.perf_counter() - started)
        if state.status is not Status.SUCCEEDED:
            raise RuntimeError(f"{AOTI_STRATEGY} compile of {spec.blueprint_id} failed: {state.last_error}")
        hashes.append(state.artifact_hash)
    options.progress("eval forward: AOTInductor package vs exported program")
    aoti_ms: list[float] = []
    export_ms: list[float] = []
    for spec, artifact_hash in zip(specs, hashes, strict=True):
        module = library.load(artifact_hash, spec.blueprint_id).fresh().eval()
        package_ms, program_ms = eval_forward_ms(module, spec, 50 if options.quick else 300)
        options.progress(
            f"{spec.blueprint_id}: eval forward p50 {statistics.median(package_ms):.3f} ms (package) vs "
            f"{statistics.median(program_ms):.3f} ms (exported program)"
        )
        aoti_ms += package_ms
        export_ms += program_ms
    aoti_p50, export_p50, compile_p50 = (statistics.median(v) for v in (aoti_ms, export_ms, durations))
    export_compile_p50 = statistics.median(export_same)
    estimate = compile_p50 * len(export_specs)
    note = f" ({', '.join(s.blueprint_id for s in specs)}; fresh inductor cache)"
    return [
        Result(
            "aot_inductor_compile_p50_s",
            compile_p50,
            "s" + note,
            baseline_name="export_compile_p50_s",
            baseline=export_compile_p50,
            ratio=compile_p50 / export_compile_p50,
        ),
        Result(
            "aot_inductor_compile_total_est_s",
            estimate,
            "s (estimated: aot_inductor_compile_p50_s x the jobs of compile_total_s)",
            baseline_name="compile_total_s",
            baseline=export_total,
            ratio=estimate / export_total,
        ),
        Result(
            "aoti_eval_forward_ms",
            aoti_p50,
            f"ms (batch {EVAL_BATCH}, no grad)",
            baseline_name="export_eval_forward_ms",
            baseline=export_p50,
            ratio=aoti_p50 / export_p50,
        ),
        Result("export_eval_forward_ms", export_p50, f"ms (batch {EVAL_BATCH}, no grad)"),
    ]


def spec_case(spec: CompileSpec) -> tuple[str, int]:
    return spec.blueprint_id, spec.slot_kind


def eval_forward_ms(module: ArtifactModule, spec: CompileSpec, calls: int) -> tuple[list[float], list[float]]:
    """No-grad eval forward of the module through its package, and through its exported eval program (the
    same module without the package: what runs where the package cannot), alternating."""
    if module.inference is None:
        raise RuntimeError(
            f"{spec.blueprint_id}: the AOTInductor package did not load: {module.inference_note}"
        )
    program = ArtifactModule(module.graph, module.eval_graph).eval()
    x = torch.randn(EVAL_BATCH, *spec.slot_shape, generator=torch.Generator().manual_seed(0))
    package_ms, program_ms = [], []
    with torch.no_grad():
        torch.testing.assert_close(module(x), program(x), atol=1e-4, rtol=1e-4)
        for _ in range(calls):
            begin = time.perf_counter()
            module(x)
            package_ms.append((time.perf_counter() - begin) * 1000)
            begin = time.perf_counter()
            program(x)
            program_ms.append((time.perf_counter() - begin) * 1000)
    return package_ms, program_ms


def fetch(source: SeedModuleSource, spec: CompileSpec) -> None:
    source.load_module(spec.blueprint_id, spec.parameter_map(), spec.slot_kind, spec.slot_shape)


def cold_fetch_ms(store: EventStore, root: Path, spec: CompileSpec) -> float:
    """A new process's first fetch: empty cache, hash looked up in the log, file read and verified."""
    library = ArtifactLibrary(DataDir(root).artifacts, store)
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
