"""A rank that hangs in its own boundary work (rank 0 deciding, rank 1 applying the decision) fails the
run with RankHung naming it and the epoch, and a RunFailed, seconds later (heartbeat.IDLE_S): not after the
control group's 600 s timeout."""

from __future__ import annotations

from pathlib import Path

import pytest

from domains.tolaria.heartbeat import IDLE_S
from leyline import decode_payload, pb
from tests.ddp.ranks import GROWING, events_of, finish, start_ranks

pytestmark = pytest.mark.slow  # each test starts two processes that import torch


@pytest.mark.parametrize(
    ("rank", "controller", "from_epoch"),
    [
        (0, "noop", 2),  # rank 0 hangs where its controller decides; rank 1 waits for the decision
        (1, "tamiyo", 1),  # rank 1 hangs applying rank 0's first command (a graft); rank 0 waits in agree
    ],
)
def test_a_hung_rank_fails_the_run_naming_it(
    tmp_path: Path, rank: int, controller: str, from_epoch: int
) -> None:
    data_dir, mark = tmp_path / "data", tmp_path / "hung-at"
    config = {**GROWING, "controller": controller, "epochs": 12}
    ranks = start_ranks(
        data_dir,
        config,
        "--run-id",
        "rh",
        ESPER_TEST_HANG_RANK=str(rank),
        ESPER_TEST_HANG_EPOCH=str(from_epoch),
        ESPER_TEST_HANG_MARK=str(mark),
    )
    results = finish(ranks)
    assert [code for code, _, _ in results] == [1, 1], results[0][2][-2000:] + results[1][2][-2000:]
    assert mark.exists(), results[0][2][-3000:] + results[1][2][-3000:]
    epoch, hung_ns = (int(field) for field in mark.read_text().split())
    events = events_of(data_dir, "rh")
    (failed_envelope,) = [e for e in events if e.event_type == "RunFailed"]
    failed = decode_payload(failed_envelope)
    assert isinstance(failed, pb.RunFailed)
    assert failed.error.startswith(f"RankHung: rank {rank} at epoch {epoch}:"), failed.error
    assert failed.epoch == epoch and failed.HasField("rank") and failed.rank == rank
    for _, _, stderr in results:  # the other rank may see the hung one's exit before its heartbeat
        assert f"rank {rank} at epoch {epoch}" in stderr, stderr[-2000:]
    assert f"RankHung: rank {rank} at epoch {epoch}" in results[rank][2]
    seconds = (failed_envelope.occurred_at_ns - hung_ns) / 1e9
    print(f"hang: rank {rank} hung at epoch {epoch}; RunFailed {seconds:.2f} s later")
    assert seconds >= IDLE_S  # the hung rank had the whole idle window to show progress


def test_a_rank_0_that_hangs_outside_its_boundary_work_is_named_by_the_rank_that_waits_for_it(
    tmp_path: Path,
) -> None:
    """Rank 0 hangs writing a checkpoint: rank 1 times out in the next epoch's gradient all-reduce (the
    default group's short timeout), finds rank 0 beating without reaching it and names it hung; rank 0's
    heartbeat then records RunFailed for the main thread that hangs."""
    data_dir, mark = tmp_path / "data", tmp_path / "hung-at"
    config = {**GROWING, "controller": "noop", "epochs": 12}
    ranks = start_ranks(
        data_dir,
        config,
        "--run-id",
        "rc",
        ESPER_TEST_HANG_RANK="0",
        ESPER_TEST_HANG_IN="checkpoint",
        ESPER_TEST_HANG_EPOCH="2",
        ESPER_TEST_HANG_MARK=str(mark),
    )
    results = finish(ranks)
    assert [code for code, _, _ in results] == [1, 1], results[0][2][-2000:] + results[1][2][-2000:]
    epoch, hung_ns = (int(field) for field in mark.read_text().split())
    (failed_envelope,) = [e for e in events_of(data_dir, "rc") if e.event_type == "RunFailed"]
    failed = decode_payload(failed_envelope)
    assert isinstance(failed, pb.RunFailed)
    # named at the collective rank 1 waited in: the next epoch's training
    assert failed.error.startswith(f"RankHung: rank 0 at epoch {epoch + 1}:"), failed.error
    assert failed.HasField("rank") and failed.rank == 0 and failed.epoch == epoch + 1
    seconds = (failed_envelope.occurred_at_ns - hung_ns) / 1e9
    print(f"hang: rank 0 hung in its checkpoint of epoch {epoch}; RunFailed {seconds:.2f} s later")
