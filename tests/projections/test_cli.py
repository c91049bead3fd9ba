"""`esper audit` and `esper rebuild` on a data directory with a real log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from leyline import pb
from ops.bench._workload import realistic_log
from ops.cli import main
from projections import open_db, schema
from tests.projections.helpers import to_store


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("data")
    log: list[pb.EventEnvelope] = list(realistic_log(2500, seed=21))
    to_store(directory / "log", log).close()
    return directory


@pytest.fixture(scope="module")
def run_id() -> str:
    started = next(e for e in realistic_log(2500, seed=21) if e.event_type == "RunStarted")
    return started.run_id


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def audit_json(capsys: pytest.CaptureFixture[str], data_dir: Path, *argv: str) -> dict:
    code, out, err = run(capsys, "audit", *argv, "--data-dir", str(data_dir), "--json")
    assert code == 0, err
    return json.loads(out)


def first(data_dir: Path, column: object) -> str:
    engine = open_db(f"sqlite:///{data_dir / 'projections.sqlite'}")
    with engine.connect() as connection:
        value = connection.execute(select(column).limit(1)).scalar()
    engine.dispose()
    return str(value)


def test_audit_chain_from_command_to_field_report(
    capsys: pytest.CaptureFixture[str], data_dir: Path, run_id: str
) -> None:
    run_report = audit_json(capsys, data_dir, "run", run_id)
    assert run_report["run"]["status"] == "completed"
    assert len(run_report["epochs"]) >= 200 and run_report["checkpoints"] and run_report["seeds"]
    command_id = first(data_dir, schema.commands.c.command_id)
    command = audit_json(capsys, data_dir, "command", command_id)
    assert command["decision"]["command_id"] == command_id
    assert command["decision"]["policy_version"] and command["decision"]["risk_level"] == "YELLOW"
    assert command["state_packet"]["packet_id"] == command["decision"]["packet_id"]
    assert command["effects"], "the seed transitions it caused"
    seed = command["effects"][0]["stream"].removeprefix("seed-")
    seed_report = audit_json(capsys, data_dir, "seed", seed)
    assert command_id in [c["command_id"] for c in seed_report["commands"]]
    assert all("gates" in h for h in seed_report["history"])
    assert seed_report["state"]["blueprint_id"] == command["command"]["blueprint_id"]
    blueprint = audit_json(capsys, data_dir, "blueprint", "BP001")
    assert blueprint["compile_jobs"][0]["events"] and blueprint["artifacts"]
    assert audit_json(capsys, data_dir, "policy", command["decision"]["policy_version"])["decisions"] > 0


def test_audit_tables_for_people(capsys: pytest.CaptureFixture[str], data_dir: Path, run_id: str) -> None:
    code, out, _ = run(capsys, "audit", "run", run_id, "--data-dir", str(data_dir), "--epoch", "7")
    assert code == 0
    assert out.startswith(f"run {run_id} (as of position")
    assert "checkpoints" in out and "rollbacks" in out


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["audit", "seed", "nope.0"], 1, "no seed 'nope.0'"),
        (["audit", "run", "nope"], 1, "no run 'nope'"),
        (["audit", "command", "nope"], 1, "no command 'nope'"),
        (["audit", "blueprint", "BP999"], 1, "no blueprint 'BP999'"),
        (["audit", "policy", "nope"], 1, "no policy version 'nope'"),
        (["audit", "blueprint", "BP001", "--epoch", "3"], 2, "--epoch needs a run"),
        (["audit", "run", "r00000143", "--epoch", "9999"], 1, "has no standing epoch 9999"),
        (["rebuild", "nope"], 2, "unknown projection 'nope'"),
        (["rebuild", "runs", "--all"], 2, "not both"),
    ],
)
def test_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], data_dir: Path, argv: list[str], code: int, message: str
) -> None:
    returned, _, err = run(capsys, *argv, "--data-dir", str(data_dir))
    assert returned == code
    assert message in err and err.count("\n") == 1


def test_rebuild_command(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    code, out, _ = run(capsys, "rebuild", "--data-dir", str(data_dir), "--json")
    assert code == 0
    assert "current" in json.loads(out)["message"] or json.loads(out)["rebuilt"]
    code, out, err = run(
        capsys, "rebuild", "runs", "alerts", "--blue-green", "--data-dir", str(data_dir), "--json"
    )
    assert code == 0, err
    assert json.loads(out)["rebuilt"] == {"runs": 2500, "alerts": 2500}
    code, out, err = run(capsys, "rebuild", "--all", "--data-dir", str(data_dir))
    assert code == 0
    assert "blueprint_catalog: rebuilt in place up to position 2500" in out
    assert "rebuild" in err  # the progress bar, on stderr


def test_audit_without_a_log(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "audit", "run", "r1", "--data-dir", str(tmp_path))
    assert code == 2
    assert "holds no event log" in err


def test_recover_brings_projections_up_to_date(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    to_store(tmp_path / "log", list(realistic_log(600, seed=4))).close()
    code, out, err = run(capsys, "recover", "--data-dir", str(tmp_path), "--json")
    assert code == 0, err
    steps = {step["step"]: step for step in json.loads(out)["steps"]}
    assert set(steps["projections"]["positions"].values()) == {600}
    assert sum(steps["projections"]["applied"].values()) > 0
    code, out, _ = run(capsys, "recover", "--data-dir", str(tmp_path))
    assert "applied 0 event(s) to the read models, all now at position 600" in out
