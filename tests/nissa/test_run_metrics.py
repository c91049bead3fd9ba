"""`esper run --metrics-port P`: the training process serves its own metrics while it trains."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from ops.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def _epochs_scraped(port: int) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return None
    for line in text.splitlines():
        if line.startswith("esper_tolaria_epochs_total "):
            return float(line.split()[1])
    return None


def test_run_serves_its_metrics_while_training(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ops.cli",
            "run",
            "--data-dir",
            str(tmp_path),
            "--epochs",
            "8",
            "--controller",
            "noop",
            "--metrics-port",
            str(port),
            "--json",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    seen: list[float] = []
    try:
        while process.poll() is None and not any(seen):
            epochs = _epochs_scraped(port)
            if epochs is not None:
                seen.append(epochs)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.05)  # poll the metrics until the run ends or shows an epoch
    finally:
        process.wait(timeout=300)
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""
    assert any(epochs >= 1 for epochs in seen), seen


def test_a_bad_metrics_port_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ops.cli", "run", "--data-dir", str(tmp_path), "--metrics-port", "70000"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert result.returncode == 2 and "--metrics-port 70000" in result.stderr
