"""Data-parallel training on CPU (gloo): epoch time with 1 and 2 ranks, a graft's re-wrap, a boundary's sync.

- epoch_s_1rank, epoch_s_2ranks: `esper run` (noop controller, digits, batch 64) in one process, and in
  two ranks started as torchrun starts them, the same global batch (32 per rank); the median of the
  epochs' own wall time (EpochCompleted.epoch_wall_ms: training with its gradient all-reduce, the sums'
  all-reduce, validation), leaving out the first epoch (DDP's first wrap). The 1-rank run is the
  baseline. On a machine of two shared cores the ranks compete for them with each other and with
  everything else: the ratio says what the second rank costs or gains here, not on a real node.
- regraft_ms: a seed module into a slot, its parameter group into the optimizer, and DDP wrapped again
  (a broadcast of every parameter from rank 0), median over rounds; baseline: the same graft and group in
  one process, where nothing is wrapped.
- boundary_sync_ms: one epoch boundary's collectives between two ranks (the epoch's sums all-reduced,
  rank 0's decision broadcast, the agreement digest all-gathered), median; target <= 5 ms; baseline: one
  gloo all-reduce of a scalar, the floor of any collective.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from domains.tolaria.aggregate import run_stream
from eventstore import open_store
from leyline import decode_payload, pb
from leyline.datadir import DataDir
from ops.bench import BenchOptions, Result
from ops.ports import free_port

DESCRIPTION = "data-parallel epochs with 1 and 2 gloo ranks, a graft's DDP re-wrap, a boundary's sync"
BOUNDARY_TARGET_MS = 5.0
ROOT = Path(__file__).resolve().parents[2]
RUN = "benchddp"


def rank_environment(rank: int, world_size: int, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world_size),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "OMP_NUM_THREADS": "1",
    }


def run_ranks(commands: list[list[str]], world_size: int) -> None:
    """The commands as ranks 0..world_size-1 (one process when world_size is 1), to completion."""
    port = free_port()
    processes = [
        subprocess.Popen(
            command,
            cwd=ROOT,
            env=rank_environment(rank, world_size, port) if world_size > 1 else {**os.environ},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank, command in enumerate(commands)
    ]
    for process in processes:
        _, stderr = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"a rank failed ({process.returncode}): {stderr[-1000:]}")


def epoch_seconds(scratch: Path, world_size: int, epochs: int) -> float:
    data_dir = scratch / f"ranks{world_size}"
    config = scratch / "config.json"
    config.write_text(json.dumps({"controller": "noop", "dataset": "digits", "epochs": epochs}))
    command = [sys.executable, "-m", "ops.cli", "run", "--data-dir", str(data_dir), "--config", str(config)]
    run_ranks([[*command, "--run-id", RUN, "--json"]] * world_size, world_size)
    store = open_store(DataDir(data_dir).log, read_only=True)
    try:
        walls = [
            payload.epoch_wall_ms
            for envelope in store.read_stream(run_stream(RUN))
            if isinstance(payload := decode_payload(envelope), pb.EpochCompleted)
        ]
    finally:
        store.close()
    return statistics.median(walls[1:]) / 1000


def in_process_figures(scratch: Path, rounds: int) -> dict[str, float]:
    output = scratch / "figures.json"
    command = [sys.executable, "-m", "ops.bench._ddp_rank", str(output), str(rounds)]
    run_ranks([command, command], 2)
    figures: dict[str, float] = json.loads(output.read_text())
    return figures


def run(options: BenchOptions) -> list[Result]:
    epochs, rounds = (4, 20) if options.quick else (8, 100)
    with tempfile.TemporaryDirectory(prefix="esper-bench-ddp-") as scratch:
        options.progress(f"esper run, 1 rank, {epochs} epochs")
        one = epoch_seconds(Path(scratch), 1, epochs)
        options.progress(f"esper run, 2 gloo ranks, {epochs} epochs")
        two = epoch_seconds(Path(scratch), 2, epochs)
        options.progress(f"re-wrap after a graft and boundary sync, {rounds} rounds on 2 ranks")
        figures = in_process_figures(Path(scratch), rounds)
    boundary = figures["boundary_sync_ms"]
    return [
        Result(
            "epoch_s_1rank", one, "s", note="baseline of epoch_s_2ranks; digits, batch 64, noop controller"
        ),
        Result(
            "epoch_s_2ranks",
            two,
            "s",
            baseline_name="epoch_s_1rank",
            baseline=one,
            ratio=two / one,
            note="same global batch (32 per rank); 2 ranks share this machine's cores with each other",
        ),
        Result(
            "regraft_ms",
            figures["regraft_ms"],
            "ms",
            baseline_name="regraft_1process_ms",
            baseline=figures["regraft_1process_ms"],
            ratio=figures["regraft_ms"] / figures["regraft_1process_ms"],
        ),
        Result(
            "boundary_sync_ms",
            boundary,
            "ms",
            baseline_name="one_all_reduce_ms",
            baseline=figures["one_all_reduce_ms"],
            ratio=boundary / figures["one_all_reduce_ms"],
            target=f"<= {BOUNDARY_TARGET_MS:g} ms",
            met=boundary <= BOUNDARY_TARGET_MS,
        ),
    ]
