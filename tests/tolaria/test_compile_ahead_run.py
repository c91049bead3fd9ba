"""A run compiles the grafts its controller would make first before a boundary needs them (ops/compose.py);
`esper run` starts the compiling child before it imports torch (ops/commands/run.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domains.tezzeret.compile_ahead import CompileAhead
from domains.tezzeret.compiler_process import CompilerProcess
from domains.tezzeret.jobs import Status
from domains.tezzeret.service import read_jobs
from domains.tolaria.config import RunConfig
from domains.urza.layout import artifact_path
from eventstore import open_store
from leyline.datadir import DataDir
from ops.cli import main
from ops.commands.run import start_compiler
from ops.compose import new_run


@pytest.mark.parametrize("started_early", [False, True])
def test_a_new_run_compiles_and_loads_the_likely_grafts_off_the_training_thread(
    tmp_path: Path, started_early: bool
) -> None:
    data_dir = DataDir(tmp_path)
    store = open_store(data_dir.log)
    compiler = CompilerProcess.start() if started_early else None
    try:
        trainer = new_run(store, data_dir, RunConfig(epochs=1), "rahead", compiler=compiler)
        ahead = trainer.kasmina.source
        assert isinstance(ahead, CompileAhead)
        slots = {request[3] for request in ahead.requests}
        assert slots == {s.shape for s in trainer.kasmina.slots.values()}  # a pick for every slot
        assert ahead.done.wait(timeout=600)
        jobs = read_jobs(store)
        hashes = {jobs[spec.job_id].artifact_hash for spec in ahead.specs}
        assert all(jobs[spec.job_id].status is Status.SUCCEEDED for spec in ahead.specs)
        assert hashes <= set(ahead.source.library.cached())  # the first graft is a warm fetch
        if compiler is not None:  # the child given did the work, and waits for grafts not foreseen
            assert compiler.process.is_alive()
        assert trainer.run().epochs == 1
        assert compiler is None or not compiler.process.is_alive()  # the run's end stops it
    finally:
        store.close()


@pytest.mark.slow
def test_the_default_esper_run_compiles_ahead_and_takes_a_seed_to_a_terminal_stage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ESPER_STORE_URL", "REDIS_URL", "RANK"):
        monkeypatch.delenv(name, raising=False)
    assert main(["run", "--data-dir", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert {"FOSSILIZED", "CULLED"} & set(summary["seeds"]), summary["seeds"]
    store = open_store(DataDir(tmp_path).log, create=False)
    try:
        events = [e.event_type for e in store.read_all() if e.event_type != "BlueprintRegistered"]
    finally:
        store.close()
    # the first graft's artifact was compiled by the compile-ahead child, not in the end-of-epoch hook
    assert events.index("CompileJobSucceeded") < events.index("SeedGrafted")


def test_esper_run_starts_the_child_first_only_for_a_new_heuristic_run_in_a_data_dir_without_artifacts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RANK", raising=False)
    data_dir = DataDir(tmp_path)
    assert (
        start_compiler(None, data_dir) is None
    )  # a resumed run: its child starts once it knows one is missing
    assert start_compiler(RunConfig(controller="noop"), data_dir) is None
    compiler = start_compiler(RunConfig(), data_dir)
    assert compiler is not None
    compiler.close()
    stored = artifact_path(data_dir.artifacts, "ab" * 32)
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b"")
    assert start_compiler(RunConfig(), data_dir) is None
    monkeypatch.setenv("RANK", "1")
    assert start_compiler(RunConfig(), DataDir(tmp_path / "fresh")) is None  # a rank that writes no log
