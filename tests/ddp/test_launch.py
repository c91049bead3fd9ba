"""`esper run --nproc-per-node N` starts the same command as N ranks through torch.distributed.run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ops import ranks
from ops.cli import main


def test_the_command_is_started_again_under_torchrun(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    started: list[list[str]] = []

    def fake_run(command: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
        started.append(command)
        return subprocess.CompletedProcess(command, 3)

    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setattr(ranks.subprocess, "run", fake_run)
    argv = ["run", "--data-dir", str(tmp_path), "--nproc-per-node", "2", "--epochs", "3", "--json"]
    monkeypatch.setattr(sys, "argv", ["esper", *argv])
    assert main(argv) == 3  # the launcher's exit status
    (command,) = started
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc-per-node=2" in command
    module_at = command.index("-m", 3)
    assert command[module_at:] == [
        "-m",
        "ops.cli",
        "run",
        "--data-dir",
        str(tmp_path),
        "--epochs",
        "3",
        "--json",
    ]


def test_a_rank_count_out_of_range_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RANK", raising=False)
    argv = ["run", "--data-dir", str(tmp_path), "--nproc-per-node", "0"]
    monkeypatch.setattr(sys, "argv", ["esper", *argv])
    assert main(argv) == 2
