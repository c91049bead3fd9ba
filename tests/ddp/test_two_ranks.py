"""Two gloo ranks on CPU, started as torchrun starts them: a graft and a live rollback every rank applies
alike, a desync and a killed rank that fail the run at once with a typed error, kill and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from leyline import decode_payload, pb
from tests.ddp.ranks import GROWING, ROOT, count, events_of, finish, start_processes, start_ranks, wait_for

pytestmark = pytest.mark.slow  # each test starts two or four processes that import torch

# A run that grafts: a seed germinated at epoch ~2 needs 9-12 boundaries to its verdict, and Tamiyo does
# not germinate one that cannot finish before the run's end.
GRAFTING_EPOCHS = 14


def checkpointed(data_dir: Path, run_id: str, epoch: int) -> bool:
    return any(
        e.event_type == "CheckpointCommitted" and e.epoch >= epoch for e in events_of(data_dir, run_id)
    )


def run_failures(data_dir: Path, run_id: str) -> list[pb.RunFailed]:
    return [p for e in events_of(data_dir, run_id) if isinstance(p := decode_payload(e), pb.RunFailed)]


def test_a_graft_and_a_live_rollback_leave_the_ranks_identical(tmp_path: Path) -> None:
    data_dir, params = tmp_path / "data", tmp_path / "params"
    params.mkdir()
    # one cached checkpoint: the rollback to epoch 1 restores from the file on every rank
    config = {**GROWING, "epochs": GRAFTING_EPOCHS, "fast_rollback_cache": 1}
    ranks = start_ranks(data_dir, config, "--run-id", "rg", ESPER_TEST_PARAMS_DIR=str(params))
    wait_for(lambda: checkpointed(data_dir, "rg", 2), what="the checkpoint of epoch 2")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rollback = [sys.executable, "-m", "ops.cli", "rollback", "--data-dir", str(data_dir)]
    subprocess.run([*rollback, "--run", "rg", "--to-epoch", "1"], env=env, check=True, cwd=ROOT)
    (code0, out0, err0), (code1, _, err1) = finish(ranks)
    assert (code0, code1) == (0, 0), err0[-2000:] + err1[-2000:]

    first, second = (torch.load(params / f"rank{rank}.pt") for rank in (0, 1))
    assert first.keys() == second.keys()
    assert max((first[name] - second[name]).abs().max().item() for name in first) == 0.0

    events = events_of(data_dir, "rg")
    (rolled_back,) = [p for e in events if isinstance(p := decode_payload(e), pb.RollbackCompleted)]
    assert rolled_back.target_epoch == 1 and rolled_back.mode == pb.ROLLBACK_MODE_FULL
    assert count(events, "SeedGrafted") >= 1
    # rank 0 alone writes: one decision per boundary, one start, one end
    assert count(events, "DecisionMade") == count(events, "EpochCompleted")
    assert count(events, "RunStarted") == 1 and count(events, "RunCompleted") == 1
    assert len({e.event_id for e in events}) == len(events)
    assert '"status": "completed"' in out0


def test_a_rank_that_grafts_another_shape_fails_the_run_at_that_boundary(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    mark = tmp_path / "skewed-at"
    ranks = start_ranks(
        data_dir,
        {**GROWING, "epochs": GRAFTING_EPOCHS},
        "--run-id",
        "rs",
        ESPER_TEST_SKEW_RANK="1",
        ESPER_TEST_SKEW_MARK=str(mark),
    )
    results = finish(ranks)
    assert [code for code, _, _ in results] == [1, 1]
    events = events_of(data_dir, "rs")
    # the failing boundary's own events (the graft among them) go to the log with its checkpoint, which
    # the agreement check comes before: the log ends at the last boundary every rank agreed on
    (failed,) = run_failures(data_dir, "rs")
    agreed = [e for e in events if e.event_type == "CheckpointCommitted"]
    assert failed.epoch == agreed[-1].epoch + 1
    assert failed.error.startswith(f"RankDesync: rank 1 at epoch {failed.epoch}:")
    assert failed.HasField("rank") and failed.rank == 1
    for _, _, stderr in results:
        assert f"rank 1 at epoch {failed.epoch}" in stderr
    (failed_envelope,) = [e for e in events if e.event_type == "RunFailed"]
    seconds = (failed_envelope.occurred_at_ns - int(mark.read_text())) / 1e9
    print(f"desync: rank 1's skewed graft to rank 0's RunFailed {seconds:.3f} s")


def test_a_killed_rank_fails_the_run_and_two_ranks_resume_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config = {**GROWING, "controller": "noop", "epochs": 12}
    ranks = start_ranks(data_dir, config, "--run-id", "rk")
    wait_for(lambda: checkpointed(data_dir, "rk", 2), what="the checkpoint of epoch 2")
    killed_at, killed_at_ns = time.monotonic(), time.time_ns()
    ranks[1].send_signal(signal.SIGKILL)
    code, _, stderr = finish(ranks[:1])[0]
    seconds = time.monotonic() - killed_at
    print(f"kill: SIGKILL of rank 1 to rank 0's exit {seconds:.2f} s")
    assert code == 1 and "rank 1 at epoch" in stderr, stderr[-2000:]
    (failed,) = run_failures(data_dir, "rk")
    assert failed.error.startswith(f"RankLost: rank 1 at epoch {failed.epoch}:")
    assert failed.HasField("rank") and failed.rank == 1
    (failed_envelope,) = [e for e in events_of(data_dir, "rk") if e.event_type == "RunFailed"]
    print(
        f"kill: SIGKILL of rank 1 to RunFailed {(failed_envelope.occurred_at_ns - killed_at_ns) / 1e9:.2f} s"
    )
    assert seconds < 30

    resumed = start_ranks(data_dir, config, "--resume", "--run-id", "rk")
    results = finish(resumed)
    assert [code for code, _, _ in results] == [0, 0], results[0][2][-2000:] + results[1][2][-2000:]
    events = events_of(data_dir, "rk")
    completed = [p for e in events if isinstance(p := decode_payload(e), pb.RunCompleted)]
    assert [c.epochs for c in completed] == [12]
    assert count(events, "RunStarted") == 2  # the start and the resume, both by rank 0


BROADCAST = """
import sys, torch
from domains.tolaria.distributed import TorchCollective
collective = TorchCollective(torch.device("cpu"))
payload = bytes(range(256)) * int(sys.argv[1]) if collective.leads else b""
received = collective.broadcast(payload, 1)
assert received == bytes(range(256)) * int(sys.argv[1]), (collective.rank, len(received))
collective.close()
"""


@pytest.mark.parametrize("blocks", [0, 1, 20])  # empty, within the first frame, beyond it
def test_a_broadcast_delivers_rank_0s_bytes_whole(tmp_path: Path, blocks: int) -> None:
    ranks = start_processes([sys.executable, "-c", BROADCAST, str(blocks)], world_size=2)
    assert [code for code, _, _ in finish(ranks)] == [0, 0]
