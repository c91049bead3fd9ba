"""The blueprint pipeline on the PostgreSQL event store (a database of its own, dropped afterwards)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from domains.karn.blocks import SEQUENCE
from domains.tezzeret.jobs import Status
from eventstore import open_store
from leyline.datadir import DataDir
from ops.cli import main
from ops.compose import module_source
from tests.postgres import scratch_database

pytestmark = pytest.mark.postgres


@pytest.fixture
def database_url() -> Iterator[str]:
    with scratch_database("esper_bp") as url:
        yield url


def test_compile_list_and_load_through_postgres(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--store", database_url, "--data-dir", str(tmp_path), "--json"]
    assert main(["blueprints", "compile", "BP011", *common]) == 0
    jobs = json.loads(capsys.readouterr().out)["jobs"]
    assert [job["status"] for job in jobs] == ["succeeded", "succeeded"]
    assert not (DataDir(tmp_path).log).exists()  # the log is in PostgreSQL, artifacts under the data dir

    assert main(["blueprints", "list", *common]) == 0
    statuses = {row["blueprint_id"]: row["compile_status"] for row in json.loads(capsys.readouterr().out)}
    assert statuses["BP011"] == "2 succeeded"

    store = open_store(database_url)
    try:
        source = module_source(store, DataDir(tmp_path))
        module, digest = source.load_module("BP011", {}, SEQUENCE, (16, 32))
        assert digest == jobs[1]["artifact_hash"]
        assert source.compiler.state(jobs[1]["job_id"]).status is Status.SUCCEEDED
        assert sum(p.numel() for p in module.parameters()) > 0
    finally:
        store.close()
