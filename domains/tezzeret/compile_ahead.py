"""Compiling ahead: the blueprints a run may graft, compiled and loaded before a boundary needs them.

    ahead = CompileAhead(source, StoreAddress(location), artifacts_dir)  # Kasmina's ModuleSource
    ahead.start(requests)                           # returns at once
    module, artifact_hash = ahead.load_module(...)
    ahead.close()                                   # at run end: stops a child still compiling

Without it the first graft of each blueprint compiles inside the end-of-epoch hook: seconds against an
18 ms budget, an overrun that puts the controller in conservative mode at the moment it grows the host.

The compile jobs run in a spawned child process, appending to the run's log as `esper blueprints compile`
does: its own interpreter, so training keeps its core and the hook its timing, and its own random number
generator (Karn seeds template weights through torch's global generator; a thread would share it with
training and break bit-identical runs). A thread of this process first imports what loading an artifact
imports (about a second: `preload_loader`), then, when the child is done, loads the artifacts into Urza's
in-process cache (file read, sha256, deserialisation; it never compiles), so the
graft is a warm fetch. A request for a spec the child has not finished waits until its job has (one
writer per job); any other request is served at once, compiling in the calling thread as before.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path

import torch
from torch import nn

from domains.karn.catalog import KarnError
from domains.tezzeret.jobs import CompileSpec, Status
from domains.tezzeret.service import Tezzeret, resolve_spec
from domains.tezzeret.source import Request, SeedModuleSource
from domains.urza.artifact import preload_loader
from domains.urza.library import ArtifactLibrary, UrzaError
from eventstore import open_store


@dataclass(frozen=True)
class StoreAddress:
    """Where the child opens the run's log: a file-store directory or a PostgreSQL URL, and its options."""

    location: str
    options: Mapping[str, object] = field(default_factory=dict)


def compile_in_child(address: StoreAddress, artifacts: str, specs: Sequence[CompileSpec]) -> None:
    """The child's work: run each spec's compile job to its end (a finished job is left as it is)."""
    torch.set_num_threads(1)
    store = open_store(address.location, create=False, **dict(address.options))
    try:
        Tezzeret(store, ArtifactLibrary(Path(artifacts), store)).compile_many(specs)
    finally:
        store.close()


class CompileAhead:
    def __init__(
        self,
        source: SeedModuleSource,
        address: StoreAddress,
        artifacts: Path,
    ) -> None:
        self.source = source
        self.address = address
        self.artifacts = artifacts
        self.requests: list[Request] = []
        self.specs: list[CompileSpec] = []
        self._child: BaseProcess | None = None
        self._thread: threading.Thread | None = None
        self.done = threading.Event()  # set once every artifact that could be compiled is in the cache
        self._closing = threading.Event()

    def start(self, requests: Sequence[Request]) -> None:
        """Compile `requests` in a child (in order, repeats and requests Karn refuses left out), then warm."""
        for request in requests:
            try:
                spec = resolve_spec(*request, strategy=self.source.strategy)
            except (KarnError, ValueError):
                continue  # a request Karn refuses is refused again, with its reason, at graft time
            if spec not in self.specs:
                self.requests.append(request)
                self.specs.append(spec)
        pending = [
            s for s in self.specs if self.source.compiler.state(s.job_id).status is not Status.SUCCEEDED
        ]
        if pending:
            context = multiprocessing.get_context("spawn")
            self._child = context.Process(
                target=compile_in_child,
                args=(self.address, str(self.artifacts), pending),
                name="esper-compile-ahead",
                daemon=True,
            )
            self._child.start()
        self._thread = threading.Thread(target=self._warm, name="esper-warm-artifacts", daemon=True)
        self._thread.start()

    def _warm(self) -> None:
        preload_loader()  # while the child compiles: the graft's load then imports nothing
        if self._child is not None:
            self._child.join()
        for request in self.requests:
            if self._closing.is_set():
                return  # the run is over: its log is about to close
            try:
                self.source.warm([request])
            except UrzaError:
                continue  # a corrupt or unloadable artifact is reported when a graft asks for it
            except Exception:  # the log closed under a run that ended without close(): warming is optional
                return
        self.done.set()

    def _wait_for_child(self, spec: CompileSpec) -> None:
        """Until the child has finished this spec's job (or is gone): never two writers on one job."""
        child = self._child
        if child is None or spec not in self.specs:
            return
        while child.is_alive() and not self.source.compiler.state(spec.job_id).status.finished:
            child.join(timeout=0.01)

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
            self._wait_for_child(spec)
        return self.source.load_module(blueprint_id, parameters, slot_kind, slot_shape)

    def close(self) -> None:
        """Stop a child still compiling (a job it leaves unfinished resumes at its next request) and the
        warming thread, before the run closes its log."""
        self._closing.set()
        child = self._child
        if child is not None and child.is_alive():
            child.terminate()
            child.join()
        if self._thread is not None:
            self._thread.join()
