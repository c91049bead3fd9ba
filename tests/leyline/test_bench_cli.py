from __future__ import annotations

import json

import pytest

from ops.cli import main


def test_bench_leyline_prints_the_spec_format(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "leyline", "--json", "--quick"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["bench"] == "leyline"
    assert document["machine"]["cpus"] >= 1
    names = {row["name"] for row in document["results"]}
    for prefix in ("systemstate", "command", "fieldreport"):
        expected = {f"{prefix}_{what}" for what in ("serialize_us", "parse_us", "bytes", "allocations")}
        assert expected <= names
    assert "sign_verify_us" in names
    sizes = {row["name"]: row["value"] for row in document["results"]}
    assert sizes["systemstate_bytes"] < 280 and sizes["command_bytes"] < 280
    assert sizes["systemstate_allocations"] >= 1


def test_unknown_bench_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "nope"]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err
