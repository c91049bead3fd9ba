"""Compiling ahead: a child process compiles the blueprints a run may graft, a thread warms the cache."""

from __future__ import annotations

from pathlib import Path

import torch

from domains.tezzeret import metrics
from domains.tezzeret.compile_ahead import CompileAhead, StoreAddress
from domains.tezzeret.compiler_process import CompilerProcess
from domains.tezzeret.source import Request, SeedModuleSource
from domains.urza.library import ArtifactLibrary
from eventstore import EventStore
from leyline import pb
from leyline.datadir import DataDir
from tests.blueprints.conftest import events_of

CONV, SEQUENCE = pb.SLOT_KIND_CONV2D, pb.SLOT_KIND_SEQUENCE
REQUESTS: list[Request] = [("BP002", {}, CONV, (4, 8, 8)), ("BP005", {}, SEQUENCE, (4, 16))]


def ahead_for(tmp_path: Path, source: SeedModuleSource) -> CompileAhead:
    return CompileAhead(source, StoreAddress(str(DataDir(tmp_path).log)), DataDir(tmp_path).artifacts)


def test_compiled_in_a_child_then_warm_and_the_rng_untouched(
    tmp_path: Path, store: EventStore, source: SeedModuleSource, library: ArtifactLibrary
) -> None:
    rng = torch.get_rng_state()
    ahead = ahead_for(tmp_path, source)
    ahead.start([*REQUESTS, ("BP002", {}, CONV, (4, 8, 8)), ("BP999", {}, CONV, (4, 8, 8))])
    assert len(ahead.specs) == 2  # the repeat and the unknown blueprint are left out
    assert ahead.done.wait(timeout=300)
    assert torch.equal(torch.get_rng_state(), rng)  # the templates were seeded in the child
    assert len(events_of(store, "CompileJobSucceeded")) == 2
    assert len(library.cached()) == 2
    module, digest = ahead.load_module("BP005", {}, SEQUENCE, (4, 16))
    assert digest in library.cached() and isinstance(module, torch.nn.Module)
    ahead.close()


def test_a_request_the_child_holds_waits_for_it_instead_of_compiling_twice(
    tmp_path: Path, store: EventStore, source: SeedModuleSource
) -> None:
    ahead = ahead_for(tmp_path, source)
    ahead.start(REQUESTS)
    _, digest = ahead.load_module("BP002", {}, CONV, (4, 8, 8))  # at once: the child is still starting
    assert digest
    assert ahead.done.wait(timeout=300)
    assert len(events_of(store, "CompileJobStarted")) == 2  # one attempt per job, all in the child
    ahead.close()


def test_a_child_started_before_its_order_compiles_it_and_reports_each_job_in_order(
    tmp_path: Path, store: EventStore, source: SeedModuleSource, library: ArtifactLibrary
) -> None:
    compiler = CompilerProcess.start()  # as `esper run` does, before the run knows what to compile
    ahead = CompileAhead(
        source, StoreAddress(str(DataDir(tmp_path).log)), DataDir(tmp_path).artifacts, compiler
    )
    ahead.start(REQUESTS)
    assert ahead.done.wait(timeout=300)
    succeeded = [e.stream for e in store.read_all() if e.event_type == "CompileJobSucceeded"]
    assert succeeded == [spec.stream for spec in ahead.specs]  # in the order asked, each once
    assert len(library.cached()) == 2
    _, digest = ahead.load_module("BP005", {}, SEQUENCE, (4, 16))
    assert digest in library.cached()
    ahead.close()
    assert not compiler.process.is_alive()


def test_a_child_whose_parent_is_gone_mid_order_exits_cleanly(
    tmp_path: Path, store: EventStore, source: SeedModuleSource
) -> None:
    compiler = CompilerProcess.start()
    assert compiler.warm_up_program() is not None  # warmed up: the order below is what it is doing
    ahead = CompileAhead(
        source, StoreAddress(str(DataDir(tmp_path).log)), DataDir(tmp_path).artifacts, compiler
    )
    ahead.start(REQUESTS)
    compiler.connection.close()  # as a parent killed mid-run leaves it: the child's reports go nowhere
    compiler.process.join(timeout=300)
    assert compiler.process.exitcode == 0  # no BrokenPipeError traceback at its first report
    assert events_of(store, "CompileJobSucceeded")  # the job it finished (the first) stays in the log
    ahead.close()


def test_a_child_whose_parent_is_gone_while_it_warms_up_exits_cleanly() -> None:
    compiler = CompilerProcess.start()
    compiler.connection.close()
    compiler.process.join(timeout=300)
    assert compiler.process.exitcode == 0


def test_a_stopped_child_with_nothing_ordered_exits_and_reports_nothing(tmp_path: Path) -> None:
    compiler = CompilerProcess.start()
    compiler.compile(StoreAddress(str(DataDir(tmp_path).log)), str(DataDir(tmp_path).artifacts), [])
    compiler.stop()
    assert list(compiler.finished()) == []
    compiler.process.join()
    assert compiler.process.exitcode == 0
    compiler.close()


def test_a_graft_not_foreseen_is_compiled_by_the_idle_child_not_by_the_training_thread(
    tmp_path: Path, store: EventStore, source: SeedModuleSource, library: ArtifactLibrary
) -> None:
    ahead = ahead_for(tmp_path, source)
    ahead.start(REQUESTS[:1])
    assert ahead.done.wait(timeout=300)
    jobs_here = metrics.JOBS.labels("succeeded")._value.get()
    module, digest = ahead.load_module("BP005", {}, SEQUENCE, (4, 16))  # not among the likely grafts
    assert metrics.JOBS.labels("succeeded")._value.get() == jobs_here  # this process compiled nothing
    assert len(events_of(store, "CompileJobSucceeded")) == 2 and digest in library.cached()
    assert isinstance(module, torch.nn.Module)
    ahead.close()
