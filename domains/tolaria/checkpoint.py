"""Checkpoints: serialized training state in content-addressed files, and an in-memory cache of recent ones.

A checkpoint holds the components named in its manifest: model, optimizer, rng (torch, CUDA, numpy,
python), data_cursor, seeds, controller and trainer (loss history, global step), packed by `archive.py`
(a JSON header and raw tensor bytes: loading executes nothing). Files written before that format are
torch.save archives, still read with weights_only=True. A file is `checkpoints/<sha256>.ckpt` under the
data directory, created under that name, fsynced and the directory fsynced; only a
checkpoint whose CheckpointCommitted event is in the log is ever loaded, and its bytes are verified
against the hash in that event.

On a CPU run the training thread packs (`serialize`) the live state, its generators' states taken by
`capture_rng`; on a device it captures a copy (the trainer's `capture`, with `clone`) that the event
writer thread packs. `write_file` runs on the writer thread, which appends CheckpointCommitted only after
`write_file` returned.
"""

from __future__ import annotations

import array
import ctypes
import hashlib
import io
import os
import queue
import random
import sys
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.random.mtrand import get_bit_generator

from domains.tolaria import archive
from leyline.datadir import DataDir


class CheckpointError(Exception):
    """A checkpoint that is missing or does not match its recorded hash."""


@dataclass(frozen=True)
class SerializedCheckpoint:
    epoch: int
    data: bytes
    sha256: str
    components: tuple[str, ...]

    @property
    def relative_path(self) -> str:
        return DataDir.checkpoint_name(self.sha256)


def capture_rng() -> dict[str, Any]:
    """Every generator's state, as its library returns it (converted only when packed, off the thread)."""
    rng: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": _NUMPY_STATE.read(),
        "python": list(random.getstate()),
    }
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


class _NumpyState:
    """numpy's global generator state as `np.random.get_state()` gives it, cheaply when it is unchanged.

    `get_state()` copies the Mersenne Twister's 624 words one at a time (~50 us, the largest part of a
    capture). The words and position are read here as raw bytes through the bit generator's ctypes
    interface (one copy, ~1 us), and the state last returned is returned again while the generator and
    those bytes are the same and it held no cached Gaussian: every draw moves the words or the position,
    except one that consumes a cached Gaussian, and none creates one without drawing words. `restore_rng`
    sets the state and forgets it; a caller of `np.random.set_state` that keeps the words and position
    but adds a cached Gaussian would not be seen (Esper draws nothing from numpy's global generator).
    A generator whose bytes do not match `get_state()` when first read is always read with `get_state()`."""

    WORDS = 624
    SIZE = WORDS * 4 + 4  # the words (uint32), then the position (a C int)

    def __init__(self) -> None:
        self._generator: object = None
        self._address = 0  # 0: read with get_state() only
        self.forget()

    def forget(self) -> None:
        self._raw = b""
        self._state: list[Any] = []

    def read(self) -> list[Any]:
        generator = get_bit_generator()
        if generator is not self._generator:
            self._generator, self._address = generator, 0
            self.forget()
            if type(generator).__name__ == "MT19937":
                self._address = generator.ctypes.state_address
                if self._bytes() != _layout(list(np.random.get_state())):
                    self._address = 0
        raw = self._bytes()
        if raw and raw == self._raw:
            return list(self._state)
        state: list[Any] = list(np.random.get_state())
        state[1].flags.writeable = False  # shared by the checkpoints that return it again
        self._raw, self._state = (raw, state) if state[3] == 0 else (b"", [])
        return list(state)

    def _bytes(self) -> bytes:
        return ctypes.string_at(self._address, self.SIZE) if self._address else b""


def _layout(state: list[Any]) -> bytes:
    """The bytes of MT19937's state struct that `np.random.get_state()`'s words and position stand for."""
    kind, words, position = state[:3]
    if kind != "MT19937" or len(words) != _NumpyState.WORDS:
        return b"-"
    position_bytes = int(position).to_bytes(4, sys.byteorder, signed=True)
    return np.asarray(words, dtype=np.uint32).tobytes() + position_bytes


_NUMPY_STATE = _NumpyState()


def restore_rng(rng: Mapping[str, Any]) -> None:
    """Restore what `capture_rng` captured, as captured or as read back (Python's words as an array, a
    list in older checkpoints, tensors in older still)."""
    torch.set_rng_state(rng["torch"])
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((kind, np.asarray(keys).astype(np.uint32), pos, has_gauss, cached))
    _NUMPY_STATE.forget()
    version, internal, gauss = rng["python"]
    words = internal.tolist() if isinstance(internal, torch.Tensor | np.ndarray) else internal
    random.setstate((version, tuple(int(word) for word in words), gauss))
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def serialize(epoch: int, components: Mapping[str, Any]) -> SerializedCheckpoint:
    data = archive.pack(_packable(components))
    return SerializedCheckpoint(epoch, data, hashlib.sha256(data).hexdigest(), tuple(components))


def _packable(components: Mapping[str, Any]) -> dict[str, Any]:
    """The components as packed: Python's 625 generator words as one uint32 array (raw bytes in the
    archive rather than 625 JSON numbers, which cost the writer thread three times as much to encode)."""
    packable = dict(components)
    rng = packable.get("rng")
    if isinstance(rng, Mapping) and isinstance(rng.get("python"), list | tuple):
        version, internal, gauss = rng["python"]
        if type(internal) is tuple and len(internal) == _MT_WORDS:
            words = np.frombuffer(array.array(_WORD_CODE, internal), dtype=np.uint32)
            packable["rng"] = {**rng, "python": [version, words, gauss]}
    return packable


_MT_WORDS = 625  # the Mersenne Twister's 624 state words and its position, each below 2**32
_WORD_CODE = next(code for code in "IL" if array.array(code).itemsize == 4)  # a C uint32


def deserialize(data: bytes, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    if archive.is_archive(data):
        return archive.unpack(data, map_location)
    loaded: dict[str, Any] = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    return loaded


def write_file(data_dir: DataDir, checkpoint: SerializedCheckpoint) -> Path:
    """Durably write the checkpoint under its content hash; an existing file holding those bytes is kept.

    OS calls only (no file object, no mkdir while the directory exists): this runs every epoch on the
    writer thread, beside the training loop. The file is created under its final name (no temporary
    and rename: one metadata change fewer before the two syncs), and the directory's sync of that name
    runs on a helper thread while the file's bytes are written and synced, so that a checkpoint waits
    for one device flush rather than two in a row (its CheckpointCommitted, appended after this
    returns, waits for both). A file torn there by a crash is never loaded, since no
    CheckpointCommitted names it until it was synced, and is replaced through a temporary name when
    the same checkpoint is written again; a file already holding the right bytes may be read by another
    process, so it is never rewritten in place."""
    directory = data_dir.checkpoints
    final = data_dir.resolve(checkpoint.relative_path)
    try:
        directory_fd = os.open(directory, os.O_RDONLY)
    except FileNotFoundError:
        directory.mkdir(parents=True, exist_ok=True)
        directory_fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if _holds(final, checkpoint.sha256):
                return final
            temporary = directory / f".{checkpoint.sha256}.{os.getpid()}.tmp"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            _write_synced(fd, checkpoint.data)
            os.replace(temporary, final)
            os.fsync(directory_fd)
            return final
        _DIRECTORY_SYNC.start(directory_fd)  # the name exists from here
        try:
            _write_synced(fd, checkpoint.data)
        finally:
            error = _DIRECTORY_SYNC.wait()  # before the directory's descriptor is closed, whatever happened
        if error is not None:
            raise error
    finally:
        os.close(directory_fd)
    return final


class _DirectorySync:
    """The helper thread that syncs a checkpoint's directory beside the file's own sync: one request and
    one answer through two C-implemented queues, a request at a time (started on first use; a child
    process after fork starts its own). Leaner than an executor and its futures, which cost the writer
    thread, which holds the interpreter meanwhile, a Future, a work item and a waiter per checkpoint."""

    def __init__(self) -> None:
        self.forget()

    def forget(self) -> None:
        self._lock = threading.Lock()  # held from start to wait: one request in flight
        self._requests: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._answers: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        self._started = False

    def start(self, directory_fd: int) -> None:
        """Sync the directory on the helper thread (here, if no thread can be started); `wait` for it."""
        self._lock.acquire()
        if not self._started:
            try:
                threading.Thread(target=self._run, name="tolaria-directory-sync", daemon=True).start()
            except RuntimeError:  # the interpreter is shutting down: sync here instead
                self._answers.put(_fsync(directory_fd))
                return
            self._started = True
        self._requests.put(directory_fd)

    def wait(self) -> BaseException | None:
        """The started sync's error, or None once it is done."""
        try:
            return self._answers.get()
        finally:
            self._lock.release()

    def _run(self) -> None:
        while True:
            self._answers.put(_fsync(self._requests.get()))


def _fsync(fd: int) -> BaseException | None:
    try:
        os.fsync(fd)
    except BaseException as exc:
        return exc
    return None


_DIRECTORY_SYNC = _DirectorySync()
os.register_at_fork(after_in_child=_DIRECTORY_SYNC.forget)


def _write_synced(fd: int, data: bytes) -> None:
    """Write all of data to the open file, sync it and close it."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _holds(path: Path, sha256: str) -> bool:
    """Whether the file holds the bytes of that hash, synced (its writer may not have synced it yet)."""
    try:
        with path.open("rb") as file:
            if hashlib.sha256(file.read()).hexdigest() != sha256:
                return False
            os.fsync(file.fileno())
            return True
    except FileNotFoundError:
        return False


def read_file(data_dir: DataDir, relative_path: str, sha256: str) -> bytes:
    path = data_dir.resolve(relative_path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file {path} is missing") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise CheckpointError(f"checkpoint file {path} has sha256 {actual}, the log records {sha256}")
    return data


@dataclass
class CachedCheckpoint:
    """A checkpoint kept in memory: a private copy of its components, its packed bytes, or both (a
    capture keeps its copy and gains its bytes once the writer thread has packed it)."""

    epoch: int
    components: dict[str, Any] | None = None
    serialized: SerializedCheckpoint | None = None

    def packed(self) -> SerializedCheckpoint:
        """The bytes of the checkpoint's file, packing the captured components the first time."""
        if self.serialized is None:
            if self.components is None:
                raise CheckpointError(f"cached checkpoint of epoch {self.epoch} holds nothing")
            self.serialized = serialize(self.epoch, self.components)
        return self.serialized

    def restorable(self) -> dict[str, Any]:
        """A copy of the components to restore from, shared with nothing (a restore keeps its tensors)."""
        if self.components is not None:
            return clone(self.components)
        return deserialize(self.packed().data)


def clone(value: Any) -> Any:
    """A private copy of nested dicts, lists and tuples of tensors, arrays and plain values (an
    OrderedDict stays one, with its `_metadata`, as the archive packs it, so that a copy packs to the
    bytes its original does; another dict subclass comes back a dict). Exact types first."""
    kind = type(value)
    if kind in _IMMUTABLE:
        return value
    if kind is torch.Tensor:
        return value.detach().clone() if value.requires_grad else value.clone()
    if kind is dict:
        return _clone_items(value)
    if isinstance(value, OrderedDict):
        ordered = OrderedDict(_clone_items(value))
        metadata = getattr(value, "_metadata", None)
        if metadata is not None:
            ordered._metadata = clone(metadata)  # type: ignore[attr-defined]
        return ordered
    if isinstance(value, dict):
        return _clone_items(value)
    if isinstance(value, torch.Tensor):
        return value.detach().clone() if value.requires_grad else value.clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, list | tuple):
        if _IMMUTABLE.issuperset(map(type, value)):  # e.g. the 625 words of Python's generator
            return value if isinstance(value, tuple) else list(value)
        return type(value)(clone(item) for item in value)
    return value


def _clone_items(value: dict[Any, Any]) -> dict[Any, Any]:
    return {key: item if type(item) in _IMMUTABLE else clone(item) for key, item in value.items()}


_IMMUTABLE = frozenset({str, int, float, bool, type(None)})


class CheckpointCache:
    """The last `capacity` checkpoints in memory, by epoch, for fast rollback."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[int, CachedCheckpoint] = OrderedDict()

    def put(self, checkpoint: CachedCheckpoint) -> None:
        self._entries[checkpoint.epoch] = checkpoint
        self._entries.move_to_end(checkpoint.epoch)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def get(self, epoch: int) -> CachedCheckpoint | None:
        return self._entries.get(epoch)

    def latest(self) -> CachedCheckpoint | None:
        return next(reversed(self._entries.values()), None)

    def discard_after(self, epoch: int) -> None:
        for key in [k for k in self._entries if k > epoch]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
