from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops.cli import main

EXPECTED = {
    "gnn_decision_p50_ms",
    "gnn_decision_p95_ms",
    "gnn200_decision_p50_ms",
    "gnn200_decision_p95_ms",
    "heuristic_decision_p50_ms",
    "recompiles_across_grafts",
    "ppo_update_batch32_ms",
    "reload_ms",
    "reload_training_stall_ms",
    "reload_training_stall_cpu_ms",
}


@pytest.mark.slow
def test_bench_tamiyo_quick_reports_every_figure_beside_its_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "tamiyo", "--json", "--quick", "--data-dir", str(tmp_path)]) == 0
    results = {row["name"]: row for row in json.loads(capsys.readouterr().out)["results"]}
    assert set(results) >= EXPECTED
    assert results["recompiles_across_grafts"]["value"] == 0
    stall = results["reload_training_stall_ms"]
    assert stall["baseline"] > 0 and "interval" in stall["note"]
    stalls = {"reload_training_stall_ms", "reload_training_stall_cpu_ms"}  # differences: may be below 0
    assert all(row["value"] >= 0 for name, row in results.items() if name not in stalls)
