"""A run compiles the grafts its controller would make first before a boundary needs them (ops/compose.py)."""

from __future__ import annotations

from pathlib import Path

from domains.tezzeret.compile_ahead import CompileAhead
from domains.tezzeret.jobs import Status
from domains.tezzeret.service import read_jobs
from domains.tolaria.config import RunConfig
from eventstore import open_store
from leyline.datadir import DataDir
from ops.compose import new_run


def test_a_new_run_compiles_and_loads_the_likely_grafts_off_the_training_thread(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path)
    store = open_store(data_dir.log)
    try:
        trainer = new_run(store, data_dir, RunConfig(epochs=1), "rahead")
        ahead = trainer.kasmina.source
        assert isinstance(ahead, CompileAhead)
        slots = {request[3] for request in ahead.requests}
        assert slots == {s.shape for s in trainer.kasmina.slots.values()}  # a pick for every slot
        assert ahead.done.wait(timeout=600)
        jobs = read_jobs(store)
        hashes = {jobs[spec.job_id].artifact_hash for spec in ahead.specs}
        assert all(jobs[spec.job_id].status is Status.SUCCEEDED for spec in ahead.specs)
        assert hashes <= set(ahead.source.library.cached())  # the first graft is a warm fetch
        assert trainer.run().epochs == 1
    finally:
        store.close()
