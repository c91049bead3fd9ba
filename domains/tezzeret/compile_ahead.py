"""Compiling ahead: the blueprints a run may graft, compiled and loaded before a boundary needs them.

    compiler = CompilerProcess.start()              # optional, as early as can be: compiler_process.py
    ahead = CompileAhead(source, StoreAddress(location), artifacts_dir, compiler)  # Kasmina's ModuleSource
    ahead.start(requests)                           # returns at once
    module, artifact_hash = ahead.load_module(...)
    ahead.close()                                   # at run end: stops a child still compiling

Without it the first graft of each blueprint compiles inside the end-of-epoch hook: seconds against an
18 ms budget, an overrun that puts the controller in conservative mode at the moment it grows the host.

The compile jobs run in a spawned child process (compiler_process.py), appending to the run's log as
`esper blueprints compile` does: its own interpreter, so training keeps its core and the hook its timing,
and its own random number generator (Karn seeds template weights through torch's global generator; a
thread would share it with training and break bit-identical runs). `esper run` starts that child before
it imports torch, so the child's imports overlap the parent's. A thread of this process first imports
what loading an artifact imports (`preload_loader`) and loads the child's warm-up program (a
process's first load costs ten times a later one), then loads each artifact into Urza's in-process
cache (file read, sha256, deserialisation; it never compiles) as soon as the child reports its job
finished, so the graft is a warm fetch. A request for a spec compiled ahead waits until that thread has
loaded it (one writer per job, one deserialisation per artifact, none of it in the hook). The child stays,
idle, until the run ends: a graft the run did not foresee (a blueprint chosen after a cull) is ordered
from it, and the training thread waits a fraction of a second for a warm compiler instead of compiling
it, torch.export's first use included (~1.5 s of CPU). Without a child (none was needed at the start, or
it is gone) a request compiles in the calling thread, as before.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import nn

from domains.karn.blueprint import KarnError
from domains.karn.catalog import check_use
from domains.tezzeret.compiler_process import CompilerProcess, StoreAddress
from domains.tezzeret.jobs import CompileSpec, Status
from domains.tezzeret.service import resolve_spec
from domains.tezzeret.source import Request, SeedModuleSource
from domains.urza.artifact import load_graph, preload_loader
from domains.urza.library import UrzaError

__all__ = ["CompileAhead", "StoreAddress"]


def warm_loader(program: bytes | None) -> None:
    """Load the child's warm-up program once and drop it: the first load of a process costs ten times a
    later one, and this one is paid while the child compiles the first artifact, not by the graft."""
    if program is None:
        return
    with contextlib.suppress(Exception):  # warming is optional: a real load reports its own errors
        load_graph(program)


class CompileAhead:
    def __init__(
        self,
        source: SeedModuleSource,
        address: StoreAddress,
        artifacts: Path,
        compiler: CompilerProcess | None = None,
    ) -> None:
        self.source = source
        self.address = address
        self.artifacts = artifacts
        self._requests: dict[CompileSpec, Request] = {}  # in the order they were taken
        self._compiler = compiler  # a child started early by the caller, else one started by start()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._loaded: dict[CompileSpec, threading.Event] = {}  # set once the warming thread is past it
        self._ordered: dict[str, CompileSpec] = {}  # job id → spec the child has yet to report
        self._serving = False  # whether the warming thread still takes the child's reports
        self._first: set[str] = set()  # job ids of start()'s order not warmed yet
        self.done = threading.Event()  # set once every artifact that could be compiled is in the cache
        self._closing = threading.Event()

    @property
    def specs(self) -> list[CompileSpec]:
        return list(self._requests)

    @property
    def requests(self) -> list[Request]:
        return list(self._requests.values())

    def start(self, requests: Sequence[Request]) -> None:
        """Compile `requests` in a child (in order, repeats and requests Karn refuses left out), then warm."""
        for request in requests:
            try:
                spec = resolve_spec(*request, strategy=self.source.strategy)
            except (KarnError, ValueError):
                continue  # a request Karn refuses is refused again, with its reason, at graft time
            if spec not in self._requests:
                self._add(spec, request)
        pending = [
            s for s in self._requests if self.source.compiler.state(s.job_id).status is not Status.SUCCEEDED
        ]
        if pending and self._compiler is None:
            self._compiler = CompilerProcess.start()
        self._ordered = {spec.job_id: spec for spec in pending}
        self._first = set(self._ordered)
        self._serving = self._compiler is not None
        if self._compiler is not None:
            self._compiler.compile(self.address, str(self.artifacts), pending)
        self._thread = threading.Thread(
            target=self._warm, args=(pending,), name="esper-warm-artifacts", daemon=True
        )
        self._thread.start()

    def _add(self, spec: CompileSpec, request: Request) -> threading.Event:
        self._requests[spec] = request
        loaded = self._loaded[spec] = threading.Event()
        return loaded

    def _warm(self, pending: list[CompileSpec]) -> None:
        try:
            preload_loader()  # while the child compiles: the graft's load then imports nothing
            with self._lock:  # the training thread may add an unforeseen graft's spec meanwhile
                compiled = [spec for spec in self._requests if spec not in pending]
            if not self._warm_specs(compiled):
                return
            if not self._first:
                self.done.set()
            if self._compiler is None:
                return
            warm_loader(self._compiler.warm_up_program())
            for job_id in self._compiler.finished():  # until the run closes the child, or it is gone
                with self._lock:
                    spec = self._ordered.pop(job_id, None)
                if spec is not None and not self._warm_specs([spec]):
                    return
                self._first.discard(job_id)
                if not self._first and not self._closing.is_set():
                    self.done.set()
        finally:
            with self._lock:
                self._serving = False
                events = list(self._loaded.values())
            for loaded in events:  # the child is done or gone: nothing left to wait for
                loaded.set()

    def _warm_specs(self, specs: Sequence[CompileSpec]) -> bool:
        """Load these specs' artifacts into the cache; False once the run is over or its log closed."""
        for spec in specs:
            if self._closing.is_set():
                return False  # the run is over: its log is about to close
            try:
                self.source.warm([self._requests[spec]])
            except UrzaError:
                pass  # a corrupt or unloadable artifact is reported when a graft asks for it
            except Exception:  # the log closed under a run that ended without close(): warming is optional
                return False
            finally:
                self._loaded[spec].set()
        return True

    def _order(self, spec: CompileSpec, request: Request) -> threading.Event | None:
        """A graft the run did not foresee, sent to the child (warm, idle): the training thread then only
        waits for it, instead of compiling it (torch.export's first use included). None where the child
        cannot take it (gone, none, or the graft will be refused) or the log already has the artifact."""
        blueprint_id = request[0]
        try:
            check_use(blueprint_id, self.source.use, self.source.approved)
        except KarnError:
            return None  # the source refuses it with its reason
        if self.source.compiler.state(spec.job_id).status is Status.SUCCEEDED:
            return None
        with self._lock:
            if not self._serving or self._compiler is None or spec in self._loaded:
                return self._loaded.get(spec)
            loaded = self._add(spec, request)
            self._ordered[spec.job_id] = spec
            self._compiler.compile(self.address, str(self.artifacts), [spec])
        return loaded

    def load_module(
        self,
        blueprint_id: str,
        parameters: Mapping[str, float],
        slot_kind: int,
        slot_shape: tuple[int, ...],
    ) -> tuple[nn.Module, str]:
        try:
            spec = resolve_spec(blueprint_id, parameters, slot_kind, slot_shape, self.source.strategy)
        except (KarnError, ValueError):
            pass  # the source raises the same error, which Kasmina records as a failed G0
        else:
            with self._lock:
                loaded = self._loaded.get(spec)
            if loaded is None:
                loaded = self._order(spec, (blueprint_id, parameters, slot_kind, slot_shape))
            if loaded is not None:  # compiled by the child: never two writers on one job, one load each
                loaded.wait()
        return self.source.load_module(blueprint_id, parameters, slot_kind, slot_shape)

    def close(self) -> None:
        """Stop the child, compiling or idle (a job it leaves unfinished resumes at its next request), and
        the warming thread, before the run closes its log."""
        self._closing.set()
        if self._compiler is not None:
            self._compiler.close()
        if self._thread is not None:
            self._thread.join()
