"""SIGKILL during a compile job, restart, resume: the job completes, with one artifact and one success."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from domains.karn.blocks import CONV
from domains.tezzeret.jobs import CompileSpec, Status
from domains.tezzeret.service import Tezzeret, resolve_spec
from domains.tezzeret.source import SeedModuleSource
from domains.urza.library import ArtifactLibrary
from eventstore import open_store
from leyline import decode_payload, pb
from leyline.datadir import DataDir

SPEC: CompileSpec = resolve_spec("BP009", {"hidden": 4}, CONV, (8, 8, 8))
REPO = Path(__file__).resolve().parents[2]


def kill_child_at(data_dir: Path, moment: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.blueprints.compile_child", str(data_dir), moment], cwd=REPO
    )
    try:
        # A liveness guard, not a performance budget: the child imports torch, then compiles.
        deadline = time.monotonic() + 300
        while not (data_dir / "reached").exists():
            assert child.poll() is None, f"child exited early with {child.returncode}"
            assert time.monotonic() < deadline, "child never reached the kill point"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["during_compile", "after_write"])
def test_sigkill_during_a_compile_then_resume(tmp_path: Path, moment: str) -> None:
    kill_child_at(tmp_path, moment)
    store = open_store(DataDir(tmp_path).log)
    try:
        library = ArtifactLibrary(DataDir(tmp_path).artifacts, store)
        tezzeret = Tezzeret(store, library)
        before = tezzeret.state(SPEC.job_id)
        assert before.status is Status.RUNNING and before.attempts == 1

        resumed = tezzeret.resume()
        assert [state.job_id for state in resumed] == [SPEC.job_id]
        state = resumed[0]
        assert state.status is Status.SUCCEEDED and state.attempts == 2

        types = [envelope.event_type for envelope in store.read_stream(SPEC.stream)]
        assert types == [
            "CompileJobQueued",
            "CompileJobStarted",
            "CompileJobFailed",
            "CompileJobStarted",
            "CompileJobSucceeded",
        ]
        failed = decode_payload(store.read_stream(SPEC.stream)[2])
        assert isinstance(failed, pb.CompileJobFailed) and failed.error.startswith("interrupted")
        stored = [e for e in store.read_all() if e.event_type == "ArtifactStored"]
        assert [e.stream for e in stored] == [f"artifact-{state.artifact_hash}"]
        assert library.artifact_hashes() == [state.artifact_hash]
        assert list((library.root / "tmp").iterdir()) == []

        _, digest = SeedModuleSource(library, tezzeret).load_module("BP009", {"hidden": 4}, CONV, (8, 8, 8))
        assert digest == state.artifact_hash
        assert tezzeret.resume() == []
    finally:
        store.close()
