"""Kasmina's entry point for seed modules: `SeedModuleSource.load_module` (compile-or-load).

It lives in Tezzeret, above both the compiler and Urza's library, because it uses both: Urza stores and
verifies artifacts and never imports the compiler.

    source = SeedModuleSource(library, Tezzeret(store, library), strategy=choose_strategy("auto", "cpu"))
    module, artifact_hash = source.load_module("BP009", {"hidden": 8}, pb.SLOT_KIND_CONV2D, (8, 8, 8))
    drills = SeedModuleSource(library, tezzeret, use=Use.DRILL)  # may load BP043–BP050

(ops/compose.module_source builds the one a run uses: the library under `<data-dir>/artifacts` and the
strategy of $ESPER_COMPILE_STRATEGY for the run's device.)

finds the compiled artifact for the request (compiling it through Tezzeret when the log has none),
verifies its sha256, keeps the loaded artifact in an in-process LRU cache, and returns a FRESH trainable
module every call: no two grafts share a parameter. Adversarial blueprints are refused unless the source
(or the call) says `use=Use.DRILL`; experimental ones need their id in `approved`. BP046–BP049 come
back wrapped in their side-effect fault (drills only).

A corrupt artifact is an ArtifactCorrupted event and error (the file is moved aside);
`esper blueprints compile` (Tezzeret.compile) rewrites it from the job's spec.

Identity fallback: `load_module_or_identity` answers a missing or corrupt artifact with an identity
module and an empty hash. That is safe only where the slot's output must equal its input anyway (e.g. a
germinating seed whose output is inert or blended from zero); Kasmina decides where to use it.

Strategy: `ops/compose.module_source` takes a selection (auto, export, aot_inductor; default
$ESPER_COMPILE_STRATEGY, else auto) and the device the seeds will run on (default: cuda where there is
one); "auto" is aot_inductor on CUDA and export on CPU (jobs.choose_strategy). Every request of the
source compiles and loads with that strategy. A blueprint not compiled ahead (`esper blueprints compile`,
`preload`) is compiled at its first request, inside the epoch hook: with aot_inductor that takes seconds,
not a fraction of one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterable, Mapping, Sequence

import torch
from torch import nn

from domains.karn import building, catalog
from domains.karn.blueprint import Use
from domains.tezzeret.jobs import DEFAULT_STRATEGY, CompileSpec, Status
from domains.tezzeret.service import Tezzeret, resolve_spec
from domains.urza import metrics
from domains.urza.library import ArtifactLibrary, UrzaError

Request = tuple[str, Mapping[str, float], int, Sequence[int]]  # blueprint, parameters, slot kind, shape
STRATEGY_VARIABLE = "ESPER_COMPILE_STRATEGY"


class CompileFailed(UrzaError):
    pass


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class SeedModuleSource:
    def __init__(
        self,
        library: ArtifactLibrary,
        compiler: Tezzeret,
        use: Use = Use.LIVE,
        approved: Collection[str] = (),
        strategy: str = DEFAULT_STRATEGY,
    ) -> None:
        self.library = library
        self.compiler = compiler
        self.use = use  # the default for every request: Use.DRILL only for fault-drill sources
        self.approved = frozenset(approved)  # experimental blueprints approved for live grafts
        self.strategy = strategy
        self._hashes: dict[CompileSpec, str] = {}
        self._lock = threading.Lock()
        self._compiling = threading.Lock()  # one thread of this process runs compile jobs at a time

    def artifact_for(self, spec: CompileSpec) -> str:
        """The artifact hash of a spec: from memory, else from the log, else by compiling it now."""
        with self._lock:
            known = self._hashes.get(spec)
        if known:
            return known
        with self._compiling:
            state = self.compiler.state(spec.job_id)
            if state.status is not Status.SUCCEEDED:
                queued = self.compiler.queue(spec) if state.status is Status.ABSENT else state
                state = self.compiler.run(queued)
        if state.status is not Status.SUCCEEDED:
            raise CompileFailed(
                f"{spec.blueprint_id}: compile job {spec.job_id} failed after {state.attempts} attempt(s): "
                f"{state.last_error}"
            )
        with self._lock:
            self._hashes[spec] = state.artifact_hash
        return state.artifact_hash

    def load_module(
        self,
        blueprint_id: str,
        parameters: Mapping[str, float],
        slot_kind: int,
        slot_shape: Sequence[int],
        *,
        use: Use | None = None,
        approved: Collection[str] = (),
        strategy: str | None = None,
    ) -> tuple[nn.Module, str]:
        started = time.perf_counter()
        catalog.check_use(blueprint_id, use or self.use, self.approved.union(approved))
        spec = resolve_spec(blueprint_id, parameters, slot_kind, slot_shape, strategy or self.strategy)
        artifact_hash = self.artifact_for(spec)
        was_cached = self.library.is_cached(artifact_hash)
        module = self.library.load(artifact_hash, blueprint_id).fresh()
        wrapped = building.with_fault(blueprint_id, spec.parameter_map(), module)
        metrics.FETCH_LATENCY.labels("warm" if was_cached else "cold").observe(time.perf_counter() - started)
        return wrapped, artifact_hash

    def preload(self, requests: Iterable[Request]) -> list[str]:
        """Compile (if needed) and load artifacts into the cache ahead of time, e.g. at run start for the
        blueprints a controller may choose: a cold fetch (file read, sha256, deserialisation) costs
        hundreds of milliseconds, a warm one a fraction of a millisecond, and grafts happen inside the
        end-of-epoch hook. Quarantine and approval are checked at load_module time, not here."""
        hashes = []
        for blueprint_id, parameters, slot_kind, slot_shape in requests:
            spec = resolve_spec(blueprint_id, parameters, slot_kind, slot_shape, self.strategy)
            artifact_hash = self.artifact_for(spec)
            self.library.load(artifact_hash, blueprint_id)
            hashes.append(artifact_hash)
        return hashes

    def warm(self, requests: Iterable[Request]) -> list[str]:
        """Load the artifacts of requests whose compile job has already succeeded into the cache, and
        nothing else: it never compiles, so it may run beside training (compile_ahead.py)."""
        hashes = []
        for blueprint_id, parameters, slot_kind, slot_shape in requests:
            spec = resolve_spec(blueprint_id, parameters, slot_kind, slot_shape, self.strategy)
            state = self.compiler.state(spec.job_id)
            if state.status is Status.SUCCEEDED and self.library.exists(state.artifact_hash):
                self.library.load(state.artifact_hash, blueprint_id)
                with self._lock:
                    self._hashes[spec] = state.artifact_hash
                hashes.append(state.artifact_hash)
        return hashes

    def load_module_or_identity(
        self,
        blueprint_id: str,
        parameters: Mapping[str, float],
        slot_kind: int,
        slot_shape: Sequence[int],
        *,
        use: Use | None = None,
        approved: Collection[str] = (),
    ) -> tuple[nn.Module, str]:
        """load_module, or (identity, "") when the artifact is missing, corrupt or cannot be compiled."""
        try:
            return self.load_module(
                blueprint_id, parameters, slot_kind, slot_shape, use=use, approved=approved
            )
        except UrzaError:
            metrics.IDENTITY_FALLBACKS.inc()
            return nn.Identity(), ""
