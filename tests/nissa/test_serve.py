"""`esper serve`: the JSON API on simulated runs, errors, the bearer token, live following, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eventstore import open_store
from leyline.datadir import DataDir
from ops.bench._workload import Simulator
from tests.nissa.helpers import get, get_json, served, simulated_runs
from tests.projections.helpers import unpositioned

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    directory = tmp_path_factory.mktemp("serve")
    return directory, simulated_runs(directory)


def test_runs_list_every_run_with_best_values(data_dir: tuple[Path, list[str]]) -> None:
    directory, run_ids = data_dir
    with served(directory) as (url, _):
        status, document = get_json(f"{url}/api/runs")
    assert status == 200
    assert sorted(run["run_id"] for run in document["runs"]) == sorted(run_ids)
    for run in document["runs"]:
        assert run["status"] == "completed"
        assert 0 < run["best_validation_accuracy"] <= 1


def test_run_has_epochs_markers_and_checkpoints(data_dir: tuple[Path, list[str]]) -> None:
    directory, run_ids = data_dir
    with served(directory) as (url, _):
        status, document = get_json(f"{url}/api/runs/{run_ids[0]}")
    assert status == 200
    standing = [epoch for epoch in document["epochs"] if not epoch["superseded"]]
    assert [epoch["epoch"] for epoch in standing] == list(range(1, len(standing) + 1))
    assert all(epoch["validation_loss"] is not None and epoch["hook_ms"] is not None for epoch in standing)
    kinds = {marker["kind"] for marker in document["markers"]}
    assert {"graft", "rollback"} <= kinds
    graft = next(marker for marker in document["markers"] if marker["kind"] == "graft")
    assert graft["blueprint_id"].startswith("BP") and graft["slot"] is not None and graft["epoch"] > 0
    assert document["checkpoints"] and all(c["content_hash"] for c in document["checkpoints"])


def test_seeds_decisions_field_reports_and_chain(data_dir: tuple[Path, list[str]]) -> None:
    directory, run_ids = data_dir
    run_id = run_ids[0]
    with served(directory) as (url, _):
        _, seeds = get_json(f"{url}/api/runs/{run_id}/seeds")
        _, decisions = get_json(f"{url}/api/runs/{run_id}/decisions")
        _, reports = get_json(f"{url}/api/runs/{run_id}/field-reports")
        seed = seeds["seeds"][0]["seed"]
        status, chain = get_json(f"{url}/api/seeds/{seed}/chain")
    transitions = seeds["seeds"][0]["transitions"]
    assert any(t["gates"] for t in transitions if t["event_type"] == "SeedTransitioned")
    decision = decisions["decisions"][0]
    assert decision["policy_name"] and decision["policy_version"] and decision["risk_level"]
    assert decision["latency_ms"] is not None and decision["action"]
    assert reports["field_reports"] and reports["field_reports"][0]["outcome"]
    assert status == 200 and chain["links"]
    link = chain["links"][0]
    assert link["state_packet"]["packet_id"] == link["decision"]["packet_id"]
    assert link["command"]["command_id"] == link["decision"]["command_id"]
    assert link["effects"] and link["field_reports"]


def test_unknown_paths_methods_and_runs_are_json_errors(data_dir: tuple[Path, list[str]]) -> None:
    directory, _ = data_dir
    with served(directory) as (url, _):
        for path in ("/nope", "/keys.json", "/../keys.json", "/log", "/api/runs/x/y/z"):
            status, headers, body = get(f"{url}{path}")
            assert status == 404 and headers["Content-Type"] == "application/json"
            assert json.loads(body)["status"] == 404
        assert get_json(f"{url}/api/runs/absent")[0] == 404
        assert get_json(f"{url}/api/seeds/absent.0/chain")[0] == 404
        status, _, body = get(f"{url}/api/runs", method="POST")
        assert status == 405 and "read-only" in json.loads(body)["error"]


def test_a_token_is_required_when_set(data_dir: tuple[Path, list[str]]) -> None:
    directory, _ = data_dir
    with served(directory, token="s3cret") as (url, _):
        status, headers, _ = get(f"{url}/api/runs")
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
        assert get(f"{url}/api/runs", token="wrong")[0] == 401
        assert get(f"{url}/api/runs", token="s3cret")[0] == 200


def test_the_read_models_follow_the_log_while_serving(tmp_path: Path) -> None:
    simulated_runs(tmp_path, runs=1, epochs=5)
    with served(tmp_path) as (url, ctx):
        store = open_store(DataDir(tmp_path).log)
        try:
            simulator = Simulator(seed=9, first_position=store.head_position() + 1)
            store.append(unpositioned(list(simulator.run(4, run_id="late"))))
        finally:
            store.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if get_json(f"{url}/api/runs/late")[0] == 200:
                break
            ctx.updates.wait_beyond(ctx.updates.position, 0.2)
        assert get_json(f"{url}/api/runs/late")[0] == 200


def _esper(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=120,
    )


def test_serve_refuses_a_public_address_without_a_token(data_dir: tuple[Path, list[str]]) -> None:
    directory, _ = data_dir
    result = _esper("serve", "--data-dir", str(directory), "--bind", "0.0.0.0", env={"ESPER_SERVE_TOKEN": ""})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "without a bearer token" in result.stderr


def test_serve_command_answers_with_the_token_from_a_file(
    data_dir: tuple[Path, list[str]], tmp_path: Path
) -> None:
    directory, _ = data_dir
    token_file = tmp_path / "token"
    token_file.write_text("t0ken\n")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ops.cli",
            "serve",
            "--data-dir",
            str(directory),
            "--port",
            "0",
            "--json",
            "--bind",
            "0.0.0.0",
            "--token-file",
            str(token_file),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert process.stdout is not None
        started = json.loads(process.stdout.readline())
        assert started["token_required"] is True
        url = f"http://127.0.0.1:{started['port']}"
        assert get(f"{url}/health")[0] == 401
        status, report = get_json(f"{url}/health", token="t0ken")
        assert status == 200 and report["status"] == "ok"
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0


def test_metrics_expose_read_model_gauges_and_request_counts(data_dir: tuple[Path, list[str]]) -> None:
    directory, run_ids = data_dir
    mirror = directory / "mirror"
    mirror.mkdir(exist_ok=True)
    (mirror / "cursor-esper-abc.json").write_text('{"log_id": "x", "position": 3, "groups": {}}')
    with served(directory) as (url, ctx):
        get(f"{url}/api/runs")
        status, headers, body = get(f"{url}/metrics")
        head = ctx.store.head_position()
    text = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples['esper_nissa_runs{status="completed"}'] == len(run_ids)
    assert samples['esper_nissa_seeds{stage="FOSSILIZED"}'] >= 1
    assert samples["esper_nissa_alerts_firing"] == 0
    assert samples['esper_nissa_projection_lag_positions{projection="runs"}'] == 0
    assert samples['esper_nissa_mirror_lag_positions{cursor="cursor-esper-abc"}'] == head - 3
    assert samples['esper_serve_requests_total{code="200",route="/api/runs"}'] >= 1
    (mirror / "cursor-esper-abc.json").unlink()


@pytest.mark.redis
def test_health_names_what_is_down(data_dir: tuple[Path, list[str]]) -> None:
    directory, _ = data_dir
    with served(directory, redis_url="redis://127.0.0.1:6379/0") as (url, _):
        status, report = get_json(f"{url}/health")
    assert status == 200 and report["down"] == [] and set(report["checks"]) == {"log", "projections", "redis"}
    with served(directory, redis_url="redis://127.0.0.1:1/0", es_url="http://127.0.0.1:1") as (url, ctx):
        status, report = get_json(f"{url}/health")
        assert status == 503 and report["status"] == "down"
        assert report["down"] == ["redis", "elasticsearch"]
        ctx.updates.failure = "OperationalError: database is gone"
        status, report = get_json(f"{url}/health")
        assert status == 503 and "projections" in report["down"]
