"""Two ranks of `esper run` started the way torchrun starts them (its variables in the environment),
as subprocesses the tests can SIGKILL, and what they left in the log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eventstore import open_store
from leyline import pb
from leyline.datadir import DataDir
from ops.ports import free_port

ROOT = Path(__file__).resolve().parents[2]

# Tamiyo grows this run: a learning rate that barely moves the loss is a plateau by epoch 3 or 4.
GROWING: dict[str, Any] = {
    "controller": "tamiyo",
    "dataset": "digits",
    "dataset_options": {"train_limit": 256},
    "batch_size": 64,
    "learning_rate": 0.00001,
    "hook_budget_ms": 60_000.0,
}


def start_ranks(
    data_dir: Path, config: dict[str, Any], *options: str, world_size: int = 2, **environment: str
) -> list[subprocess.Popen[str]]:
    """`esper run` on every rank (tests/ddp/rank_entry.py), with the config written beside the data."""
    config_file = data_dir.parent / f"{data_dir.name}-config.json"
    config_file.write_text(json.dumps(config))
    command = [sys.executable, "-m", "tests.ddp.rank_entry", "run", "--data-dir", str(data_dir)]
    command += ["--config", str(config_file), "--json", *options]
    return start_processes(command, world_size, **environment)


def start_processes(command: list[str], world_size: int, **environment: str) -> list[subprocess.Popen[str]]:
    """The command as ranks 0..world_size-1, with torchrun's variables."""
    port = str(free_port())
    processes = []
    for rank in range(world_size):
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world_size),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            "OMP_NUM_THREADS": "1",
            **environment,
        }
        processes.append(
            subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    return processes


def finish(processes: list[subprocess.Popen[str]], timeout: float = 240) -> list[tuple[int, str, str]]:
    """Each rank's exit status, stdout and stderr."""
    return [(p.wait(timeout), *p.communicate()) for p in processes]


def wait_for(condition: Callable[[], bool], timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def events_of(data_dir: Path, run_id: str) -> list[pb.EventEnvelope]:
    """Every event of the run (its own stream's and its seeds'), in log order."""
    if not DataDir(data_dir).log.exists():
        return []
    store = open_store(DataDir(data_dir).log, read_only=True)
    try:
        return [e for e in store.read_all() if e.run_id == run_id]
    finally:
        store.close()


def count(events: list[pb.EventEnvelope], kind: str) -> int:
    return sum(1 for e in events if e.event_type == kind)
