"""The run aggregate (pure evolve/decide) and checkpoint files, cache and RNG capture."""

from __future__ import annotations

import os
import random
import stat
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from domains.tolaria import checkpoint as ckpt
from domains.tolaria import control
from domains.tolaria.aggregate import (
    RequestRollback,
    RollbackRejected,
    RunStatus,
    decide_rollback,
    event_id,
    fold,
    run_stream,
)
from leyline import new_envelope, pb
from leyline.datadir import DataDir
from leyline.signing import Keyring, Signer

RUN = "rtest0001"


def stored(kind: str, payload: object, position: int) -> pb.EventEnvelope:
    envelope = new_envelope(kind, run_stream(RUN), payload, run_id=RUN)  # type: ignore[arg-type]
    envelope.global_position = position
    return envelope


def history(epochs: int, rollback_to: int | None = None) -> list[pb.EventEnvelope]:
    events = [stored("RunStarted", pb.RunStarted(run_id=RUN, config_json="{}"), 1)]
    for epoch in range(1, epochs + 1):
        events.append(stored("EpochCompleted", pb.EpochCompleted(state=pb.SystemStatePacket(epoch=epoch)), 0))
        manifest = pb.CheckpointManifest(epoch=epoch, content_hash=f"h{epoch}", path=f"checkpoints/h{epoch}")
        events.append(stored("CheckpointCommitted", pb.CheckpointCommitted(manifest=manifest), 0))
    if rollback_to is not None:
        events.append(stored("RollbackRequested", pb.RollbackRequested(target_epoch=rollback_to), 0))
    for position, envelope in enumerate(events, start=1):
        envelope.global_position = position
    return events


def test_fold_tracks_epochs_and_checkpoints() -> None:
    state = fold(history(4))
    assert state.status is RunStatus.RUNNING
    assert state.epoch == 4
    assert [c.epoch for c in state.checkpoints] == [1, 2, 3, 4]
    assert state.checkpoints[1].position == 5
    assert state.pending_rollback is None


def test_rollback_drops_later_checkpoints_and_bumps_the_generation() -> None:
    events = history(5, rollback_to=2)
    state = fold(events)
    assert state.pending_rollback is not None and state.pending_rollback.position == len(events)
    completed = pb.RollbackCompleted(target_epoch=2, target_position=5, superseded_from=6, superseded_to=11)
    state = fold([stored("RollbackCompleted", completed, len(events) + 1)], state)
    assert state.pending_rollback is None
    assert state.generation == 1 and state.epoch == 2
    assert [c.epoch for c in state.checkpoints] == [1, 2]
    assert state.superseded == ((6, 11),)


@settings(max_examples=30, deadline=None)
@given(epochs=st.integers(1, 8), target=st.integers(0, 10))
def test_decide_rollback_accepts_exactly_the_committed_epochs(epochs: int, target: int) -> None:
    state = fold(history(epochs))
    request = RequestRollback(RUN, target, "operator:test", "because")
    if 1 <= target <= epochs:
        requested = decide_rollback(state, request)
        assert requested.target_epoch == target and requested.requested_by == "operator:test"
    else:
        with pytest.raises(RollbackRejected, match="no committed checkpoint"):
            decide_rollback(state, request)


def test_decide_rollback_rejects_absent_and_finished_runs() -> None:
    request = RequestRollback(RUN, 1, "op", "")
    with pytest.raises(RollbackRejected, match="does not exist"):
        decide_rollback(fold([]), request)
    done = [*history(2), stored("RunCompleted", pb.RunCompleted(run_id=RUN), 99)]
    with pytest.raises(RollbackRejected, match="is completed"):
        decide_rollback(fold(done), request)


def test_event_ids_are_deterministic_per_generation() -> None:
    assert event_id(RUN, 0, 3, "EpochCompleted") == event_id(RUN, 0, 3, "EpochCompleted")
    assert event_id(RUN, 0, 3, "EpochCompleted") != event_id(RUN, 1, 3, "EpochCompleted")


def test_checkpoint_file_round_trip_and_corruption(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    serialized = ckpt.serialize(4, {"model": model.state_dict(), "trainer": {"epoch": 4}})
    assert (
        ckpt.serialize(4, {"model": model.state_dict(), "trainer": {"epoch": 4}}).sha256 == serialized.sha256
    )
    path = ckpt.write_file(DataDir(tmp_path), serialized)
    assert path == tmp_path / serialized.relative_path
    data = ckpt.read_file(DataDir(tmp_path), serialized.relative_path, serialized.sha256)
    restored = ckpt.deserialize(data)
    assert torch.equal(restored["model"]["weight"], model.weight)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ckpt.CheckpointError, match="the log records"):
        ckpt.read_file(DataDir(tmp_path), serialized.relative_path, serialized.sha256)
    with pytest.raises(ckpt.CheckpointError, match="missing"):
        ckpt.read_file(DataDir(tmp_path), "checkpoints/absent.ckpt", "0" * 64)


def test_a_torn_file_under_a_checkpoints_name_is_replaced_and_an_intact_one_kept(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path)
    serialized = ckpt.serialize(2, {"trainer": {"epoch": 2}, "model": torch.nn.Linear(4, 3).state_dict()})
    path = data_dir.resolve(serialized.relative_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(serialized.data[: len(serialized.data) // 2])  # a crash in the middle of the write
    assert ckpt.write_file(data_dir, serialized) == path
    assert ckpt.read_file(data_dir, serialized.relative_path, serialized.sha256) == serialized.data
    inode = path.stat().st_ino
    ckpt.write_file(data_dir, serialized)
    assert path.stat().st_ino == inode  # the intact file is kept, not rewritten under a reader
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_a_new_checkpoint_file_and_its_name_are_both_synced_before_write_file_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The directory's sync runs beside the file's (one device flush waited for, not two in a row), and
    write_file returns only after both: CheckpointCommitted is appended after it returns."""
    data_dir = DataDir(tmp_path)
    data_dir.checkpoints.mkdir(parents=True)
    synced: list[tuple[str, str]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        kind = "directory" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        synced.append((kind, threading.current_thread().name))

    monkeypatch.setattr(os, "fsync", fsync)
    for epoch in (1, 2):
        serialized = ckpt.serialize(epoch, {"trainer": {"epoch": epoch}})
        ckpt.write_file(data_dir, serialized)
        assert sorted(kind for kind, _ in synced) == ["directory", "file"]
        threads = dict(synced)
        assert threads["file"] == threading.current_thread().name
        assert threads["directory"].startswith("tolaria-directory-sync")
        synced.clear()
    assert ckpt.read_file(data_dir, serialized.relative_path, serialized.sha256) == serialized.data


def test_a_failed_directory_sync_is_raised_by_write_file_and_the_next_write_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper thread's error comes back to the writer, which then holds no claim on the helper."""
    data_dir = DataDir(tmp_path)
    data_dir.checkpoints.mkdir(parents=True)
    real_fsync = os.fsync

    def failing(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(5, "directory sync failed")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(OSError, match="directory sync failed"):
        ckpt.write_file(data_dir, ckpt.serialize(1, {"trainer": {"epoch": 1}}))
    assert not ckpt._DIRECTORY_SYNC._lock.locked()
    monkeypatch.setattr(os, "fsync", real_fsync)
    serialized = ckpt.serialize(2, {"trainer": {"epoch": 2}})
    ckpt.write_file(data_dir, serialized)
    assert ckpt.read_file(data_dir, serialized.relative_path, serialized.sha256) == serialized.data


def test_rng_capture_restores_every_generator() -> None:
    state = ckpt.deserialize(ckpt.serialize(0, {"rng": ckpt.capture_rng()}).data)["rng"]
    expected = (torch.rand(3), np.random.rand(3), random.random())
    ckpt.restore_rng(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1])
    assert expected[2] == again[2]


def test_cache_keeps_the_most_recent() -> None:
    cache = ckpt.CheckpointCache(3)
    for epoch in range(1, 6):
        cache.put(ckpt.CachedCheckpoint(epoch, {"epoch": epoch}))
    assert len(cache) == 3 and cache.get(2) is None
    latest = cache.latest()
    assert latest is not None and latest.epoch == 5
    cache.discard_after(3)
    assert cache.get(4) is None and cache.get(3) is not None


def test_control_file_delivery(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path)
    signer = Signer(Keyring.generate())
    assert control.take(data_dir, RUN) is None
    first = control.signed_request(
        signer, pb.RollbackRequested(run_id=RUN, target_epoch=2, requested_by="op")
    )
    control.deliver(data_dir, first)
    taken = control.take(data_dir, RUN)
    assert taken == first.SerializeToString()
    second = control.signed_request(signer, pb.RollbackRequested(run_id=RUN, target_epoch=1))
    control.deliver(data_dir, second)
    control.done(data_dir, RUN, first.SerializeToString())  # a newer request is left for the next boundary
    assert control.take(data_dir, RUN) == second.SerializeToString()
    control.done(data_dir, RUN, second.SerializeToString())
    assert control.take(data_dir, RUN) is None
