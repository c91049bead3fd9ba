"""Checkpoints captured on the training thread and written by the writer thread: the archive format, a
SIGKILL between a checkpoint's capture and its commit, and no per-batch host/device sync on a GPU."""

from __future__ import annotations

import io
import json
import random
import signal
import subprocess
import sys
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.random.mtrand import get_bit_generator, set_bit_generator

from domains.tolaria import archive
from domains.tolaria import checkpoint as ckpt
from domains.tolaria.config import build_config
from domains.tolaria.data import epoch_order
from domains.tolaria.loop import train_epoch
from domains.tolaria.trainer import Trainer
from eventstore import open_store
from leyline.datadir import DataDir
from ops.compose import new_run, resume
from tests.tolaria.helpers import SMALL, checkpoint_hashes, epoch_records, payloads, run_events

ROOT = Path(__file__).resolve().parents[2]

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.uint8, torch.bool]

tensors = st.builds(
    lambda dtype, shape, seed: (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 100).to(
        dtype
    ),
    st.sampled_from(DTYPES),
    st.lists(st.integers(0, 4), max_size=3).map(tuple),
    st.integers(0, 2**31),
)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
trees = st.recursive(
    scalars | tensors,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=6) | st.integers(), children, max_size=4)
    ),
    max_leaves=12,
)


def same(left: Any, right: Any) -> bool:
    if isinstance(left, torch.Tensor):
        return (
            isinstance(right, torch.Tensor)
            and left.dtype == right.dtype
            and left.shape == right.shape
            and bool(torch.equal(left, right))
        )
    if isinstance(left, dict):
        return (
            type(right) is type(left)
            and list(left) == list(right)
            and all(same(left[k], right[k]) for k in left)
        )
    if isinstance(left, list | tuple):
        return type(right) is type(left) and len(left) == len(right) and all(map(same, left, right))
    return type(left) is type(right) and left == right


@settings(max_examples=60, deadline=None)
@given(trees)
def test_an_archive_returns_what_it_packed_and_equal_state_packs_to_equal_bytes(tree: Any) -> None:
    components = {"value": tree}
    data = archive.pack(components)
    assert same(archive.unpack(data), components)
    assert archive.pack(ckpt.clone(components)) == data  # identity of objects does not change the bytes


def test_archive_keeps_state_dict_metadata_and_numpy_arrays_and_refuses_what_it_cannot_hold() -> None:
    model = torch.nn.BatchNorm1d(3)
    state = model.state_dict()
    keys = np.arange(624, dtype=np.uint32)
    restored = archive.unpack(archive.pack({"model": state, "keys": keys}))
    assert isinstance(restored["model"], OrderedDict)
    assert restored["model"]._metadata == state._metadata  # type: ignore[attr-defined]
    assert restored["keys"].dtype == np.uint32 and np.array_equal(restored["keys"], keys)
    with pytest.raises(archive.ArchiveError, match="cannot hold a set"):
        archive.pack({"bad": {1, 2}})
    with pytest.raises(archive.ArchiveError, match="bad magic"):
        archive.unpack(b"PK\x03\x04 not an archive")


def test_a_torch_save_checkpoint_from_before_the_archive_still_loads() -> None:
    model = torch.nn.Linear(3, 2)
    buffer = io.BytesIO()
    numpy_state: Any = np.random.get_state()
    kind, keys, pos, has_gauss, cached = numpy_state
    legacy_rng = {  # as capture_rng stored them then: tensors for the numpy keys and Python's words
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": [3, torch.tensor((1,) * 625, dtype=torch.int64), None],
    }
    torch.save({"model": model.state_dict(), "rng": legacy_rng}, buffer)
    loaded = ckpt.deserialize(buffer.getvalue())
    assert all(torch.equal(loaded["model"][k], v) for k, v in model.state_dict().items())
    ckpt.restore_rng(loaded["rng"])
    restored: Any = np.random.get_state()
    assert np.array_equal(restored[1], keys)


def packed_without_drawing(trainer: Trainer) -> ckpt.SerializedCheckpoint:
    """The trainer's state packed as a checkpoint, leaving every random generator as it found it."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    torch_state = torch.get_rng_state()
    packed = ckpt.serialize(1, ckpt.clone(trainer.components()))
    random.setstate(python_state)
    np.random.set_state(numpy_state)
    torch.set_rng_state(torch_state)
    return packed


def assert_shares_no_tensor(trainer: Trainer, state: dict[str, Any]) -> None:
    """The model's and the optimizer's tensors in `state` share no storage with the live trainer's."""
    live = [*trainer.model.state_dict().values(), *trainer.optimizer.state_dict()["state"][0].values()]
    copies = [*state["model"].values(), *state["optimizer"]["state"][0].values()]
    assert {t.untyped_storage().data_ptr() for t in live}.isdisjoint(
        t.untyped_storage().data_ptr() for t in copies
    )


def test_a_capture_is_the_components_copied_and_shares_no_tensor_with_the_live_state(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path)
    store = open_store(data_dir.log)
    try:
        trainer = new_run(store, data_dir, build_config({**SMALL, "epochs": 3}), "rcapture")
        trainer.run_epoch()
        trainer.sink.flush()
        expected = packed_without_drawing(trainer)
        captured = trainer.capture()
        assert ckpt.serialize(1, captured).data == expected.data  # equal state, equal bytes
        assert_shares_no_tensor(trainer, captured)
        trainer.sink.close()
    finally:
        store.close()


def test_a_cpu_runs_checkpoint_is_packed_at_commit_and_restores_a_copy_of_that_state(tmp_path: Path) -> None:
    """On CPU the cache holds the bytes packed at the boundary (those the writer writes): training on
    afterwards changes nothing in them, and a fast rollback's copy shares no tensor with the live state."""
    data_dir = DataDir(tmp_path)
    store = open_store(data_dir.log)
    try:
        trainer = new_run(store, data_dir, build_config({**SMALL, "epochs": 3}), "rpacked")
        trainer.run_epoch()
        trainer.sink.flush()
        expected = packed_without_drawing(trainer)
        entry = trainer.checkpoint()
        assert entry.components is None and entry.serialized is not None
        assert entry.packed().data == expected.data
        trainer.run_epoch()
        trainer.sink.flush()
        assert entry.packed().data == expected.data
        restored = entry.restorable()
        assert ckpt.serialize(1, restored).data == expected.data
        assert_shares_no_tensor(trainer, restored)
        trainer.sink.close()
    finally:
        store.close()


def test_pythons_generator_words_pack_as_raw_words_and_restore_exactly() -> None:
    random.seed(7)
    rng = ckpt.capture_rng()
    data = ckpt.serialize(0, {"rng": rng}).data
    start = len(archive.MAGIC) + 8
    header = json.loads(data[start : start + int.from_bytes(data[len(archive.MAGIC) : start], "little")])
    python = header[header.index("rng") + 1]
    words = python[python.index("python") + 1][2]
    assert words[:3] == ["N", "<u4", [625]]  # raw words in the data section, not 625 JSON numbers
    expected = [random.random() for _ in range(3)]
    ckpt.restore_rng(ckpt.deserialize(ckpt.serialize(0, {"rng": rng}).data)["rng"])
    assert [random.random() for _ in range(3)] == expected


def _same_numpy_state(captured: list[Any]) -> bool:
    kind, words, *rest = np.random.get_state()
    return captured[0] == kind and bool((captured[1] == words).all()) and captured[2:] == rest


def test_numpys_state_is_captured_as_get_state_gives_it_whatever_drew_from_it_between_captures() -> None:
    generator = get_bit_generator()
    np.random.seed(11)
    first = ckpt.capture_rng()["numpy"]
    again = ckpt.capture_rng()["numpy"]
    assert _same_numpy_state(first) and again[1] is first[1]  # unchanged: the words read once
    draws: list[Any] = [
        np.random.rand,
        np.random.randn,  # a pair drawn, one kept as the cached Gaussian
        np.random.randn,  # the cached Gaussian consumed: words and position unchanged
        lambda: np.random.set_state(("MT19937", np.arange(624, dtype=np.uint32), 5, 1, 0.25)),
        lambda: ckpt.restore_rng(dict(ckpt.capture_rng(), numpy=first)),
        # the words just captured again, now with a cached Gaussian: restore_rng forgets what it read
        lambda: ckpt.restore_rng(dict(ckpt.capture_rng(), numpy=[*first[:3], 1, 0.5])),
        lambda: set_bit_generator(np.random.MT19937(3)),
    ]
    for draw in draws:
        draw()
        assert _same_numpy_state(ckpt.capture_rng()["numpy"])
    set_bit_generator(generator)
    with pytest.raises(ValueError):  # shared between checkpoints: read-only
        first[1][0] = 0


# The child trains SMALL and dies by SIGKILL on the writer thread at KILL_EPOCH's checkpoint: before its
# file is written, or after the file is durable but before CheckpointCommitted is appended. The training
# thread has captured that checkpoint and gone on to the next epoch by then.
CHILD = """
import json, os, signal, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from domains.tolaria import checkpoint
from domains.tolaria.config import build_config
from eventstore import open_store
from leyline.datadir import DataDir
from ops.compose import new_run

data_dir, kill_epoch, when, config = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
write_file = checkpoint.write_file

def dying_write(directory, serialized):
    if serialized.epoch == kill_epoch and when == "before-write":
        os.kill(os.getpid(), signal.SIGKILL)
    path = write_file(directory, serialized)
    if serialized.epoch == kill_epoch:
        os.kill(os.getpid(), signal.SIGKILL)
    return path

checkpoint.write_file = dying_write
store = open_store(DataDir(data_dir).log)
new_run(store, DataDir(data_dir), build_config(config), "rkill").run()
"""
KILL_EPOCH = 4


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before-write", "after-write"])
def test_a_sigkill_between_capture_and_commit_resumes_from_the_previous_committed_checkpoint(
    tmp_path: Path, when: str
) -> None:
    reference_dir = tmp_path / "ref"
    store = open_store(DataDir(reference_dir).log)
    try:
        reference = new_run(store, DataDir(reference_dir), build_config(SMALL), "rkill").run().model_sha256
    finally:
        store.close()
    reference_events = run_events(reference_dir, "rkill")

    data_dir = tmp_path / "killed"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(data_dir), str(KILL_EPOCH), when, json.dumps(SMALL)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    killed = run_events(data_dir, "rkill")
    assert sorted(checkpoint_hashes(killed)) == list(range(1, KILL_EPOCH))
    # the epoch's events are appended with its CheckpointCommitted, so none of epoch KILL_EPOCH's are in
    assert [p.state.epoch for p in payloads(killed, "EpochCompleted")] == list(range(1, KILL_EPOCH))
    written = {p.name for p in DataDir(data_dir).checkpoints.glob("*.ckpt")}
    expected_file = f"{checkpoint_hashes(reference_events)[KILL_EPOCH]}.ckpt"
    assert (expected_file in written) == (when == "after-write")  # a durable file, never committed

    store = open_store(DataDir(data_dir).log)
    try:
        resumed = resume(store, DataDir(data_dir), "rkill")
        assert resumed.epoch == KILL_EPOCH - 1
        summary = resumed.run()
    finally:
        store.close()
    assert summary.model_sha256 == reference
    events = run_events(data_dir, "rkill")
    assert epoch_records(events) == epoch_records(reference_events)
    assert checkpoint_hashes(events) == checkpoint_hashes(reference_events)


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="counts CUDA host/device synchronisations; no CUDA here"
)
def test_the_training_pass_does_not_synchronise_per_batch_on_a_gpu(tmp_path: Path) -> None:
    """Synchronisations of one training pass are counted with CUDA's sync debug mode: a pass of many
    batches must make no more of them than a pass of one batch (the per-epoch ones, e.g. the batch order's
    upload, are allowed)."""
    store = open_store(DataDir(tmp_path).log)
    trainer = new_run(store, DataDir(tmp_path), build_config({**SMALL, "device": "cuda"}), "rcuda")
    train = trainer.splits.train

    def synchronisations(batch_size: int) -> int:
        order = epoch_order(0, 1, len(train))
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                train_epoch(trainer.model, trainer.optimizer, trainer.loss_fn, train, order, batch_size)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(warning.message) for warning in caught)

    try:
        synchronisations(len(train))  # warm-up: lazy initialisation may synchronise once
        one_batch = synchronisations(len(train))
        many_batches = synchronisations(max(1, len(train) // 20))
    finally:
        trainer.sink.close()
        store.close()
    assert many_batches == one_batch, f"{many_batches} synchronisations for 20 batches, {one_batch} for one"
