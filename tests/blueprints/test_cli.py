"""`esper blueprints list|show|compile` in process, on a temporary data directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from domains.karn.catalog import CATALOGUE
from leyline.datadir import DataDir
from ops.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_needs_no_log(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "blueprints", "list", "--json", "--data-dir", str(tmp_path / "none"))
    rows = json.loads(out)
    assert code == 0 and len(rows) == len(CATALOGUE)
    assert {row["compile_status"] for row in rows} == {"not compiled"}
    code, out, _ = run(capsys, "blueprints", "list", "--tier", "adversarial", "--data-dir", str(tmp_path))
    assert code == 0 and "nan_injection" in out and "identity_passthrough" not in out
    assert not (DataDir(tmp_path).log).exists()


def test_compile_then_list_and_show(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = str(tmp_path)
    code, out, _ = run(capsys, "blueprints", "compile", "BP003", "bp012", "--json", "--data-dir", data)
    assert code == 0
    document = json.loads(out)
    assert document["registered"] == len(CATALOGUE) and document["resumed"] == []
    assert [(j["blueprint_id"], j["slot_kind"], j["status"]) for j in document["jobs"]] == [
        ("BP003", "conv2d", "succeeded"),
        ("BP003", "sequence", "succeeded"),
        ("BP012", "conv2d", "succeeded"),
        ("BP012", "sequence", "succeeded"),
    ]
    code, out, _ = run(capsys, "blueprints", "list", "--json", "--data-dir", data)
    statuses = {row["blueprint_id"]: row["compile_status"] for row in json.loads(out)}
    assert statuses["BP003"] == "2 succeeded" and statuses["BP004"] == "not compiled"

    code, out, _ = run(capsys, "blueprints", "show", "BP003", "--json", "--data-dir", data)
    shown = json.loads(out)
    assert code == 0 and shown["name"] == "layer_norm_basic" and len(shown["jobs"]) == 2
    assert all(Path(job["artifact_path"]).is_file() for job in shown["jobs"])
    code, out, _ = run(capsys, "blueprints", "show", "BP003", "--data-dir", data)
    assert "eps" in out and "succeeded" in out

    code, out, _ = run(capsys, "blueprints", "compile", "BP003", "--json", "--data-dir", data)
    again = json.loads(out)
    assert again["registered"] == 0
    assert [j["artifact_hash"] for j in again["jobs"]] == [j["artifact_hash"] for j in document["jobs"][:2]]


def test_failed_compile_exits_1_with_the_reason(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(
        capsys,
        "blueprints",
        "compile",
        "BP031",
        "--inject-failures",
        "3",
        "--max-attempts",
        "1",
        "--data-dir",
        str(tmp_path),
    )
    assert code == 1 and "1 compile job(s) failed" in err
    assert "injected compile failure" in out
    code, out, _ = run(capsys, "blueprints", "show", "BP031", "--json", "--data-dir", str(tmp_path))
    assert json.loads(out)["jobs"][0]["status"] == "failed"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answers of a machine without CUDA")
def test_strategy_selection(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = str(tmp_path)
    code, out, _ = run(
        capsys, "blueprints", "compile", "BP003", "--device", "cpu", "--json", "--data-dir", data
    )
    assert code == 0 and {job["strategy"] for job in json.loads(out)["jobs"]} == {"export"}
    code, out, _ = run(capsys, "blueprints", "compile", "BP003", "--json", "--data-dir", data)
    assert code == 0 and {job["strategy"] for job in json.loads(out)["jobs"]} == {"export"}

    argv = ["blueprints", "compile", "BP003", "--device", "cuda", "--max-attempts", "1", "--data-dir", data]
    monkeypatch.setenv("ESPER_COMPILE_STRATEGY", "aot_inductor")
    code, out, err = run(capsys, *argv)
    assert code == 1 and "aot_inductor:cuda" in out and "needs a CUDA device" in out
    monkeypatch.setenv("ESPER_COMPILE_STRATEGY", "fast")
    code, _, err = run(capsys, *argv)
    assert code == 2 and "ESPER_COMPILE_STRATEGY='fast' is not one of: auto, export, aot_inductor" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["blueprints"], "choose an action"),
        (["blueprints", "compile", "BP009", "--param", "hidden=99"], "'hidden' = 99 is outside [2, 16]"),
        (["blueprints", "compile", "BP009", "--param", "hidden"], "must be NAME=NUMBER"),
        (["blueprints", "compile", "BP009", "--param", "width=2"], "takes parameter(s) width"),
        (["blueprints", "compile", "--conv-shape", "8,8"], "--conv-shape '8,8' must be 3 positive"),
        (["blueprints", "compile", "BP031", "--max-attempts", "0"], "--max-attempts must be at least 1"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], message: str
) -> None:
    code, _, err = run(capsys, *argv, "--data-dir", str(tmp_path))
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argv", [["blueprints", "show", "BP099"], ["blueprints", "compile", "BP009", "bp099"]]
)
def test_an_unknown_blueprint_is_exit_1_as_in_audit(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]
) -> None:
    code, _, err = run(capsys, *argv, "--data-dir", str(tmp_path))
    assert code == 1  # an id that names nothing, as `esper audit blueprint BP099`
    assert "unknown blueprint 'BP099'" in err and len(err.strip().splitlines()) == 1
