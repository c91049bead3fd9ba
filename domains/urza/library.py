"""Content-addressed artifact storage under `<data-dir>/artifacts/`.

Artifacts live at `artifacts/sha256/<first two hex>/<sha256>.pt2`. Writes are atomic (temporary file,
fsync, rename, directory fsync), so a crash leaves either the whole file or none; the same content always
lands at the same path, so writing it twice yields one file. Every read verifies the sha256: a mismatch
appends an ArtifactCorrupted event, moves the file aside to `artifacts/corrupt/` and raises
ArtifactCorrupted. Loaded artifacts are kept in an in-process LRU cache keyed by hash.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import NoReturn

from domains.urza import metrics
from domains.urza.artifact import ArtifactFormatError, ArtifactModule, module_from, unpack
from domains.urza.layout import artifact_path, stored_hashes
from eventstore import EventStore
from leyline import new_envelope, pb, stream_name

SOURCE = "urza"
DEFAULT_CACHE_SIZE = 128


class UrzaError(Exception):
    """An artifact problem; the message names the artifact and what to do."""


class ArtifactMissing(UrzaError):
    pass


class ArtifactUnloadable(UrzaError):
    """Intact bytes in a format this code cannot load (e.g. written by another artifact format)."""


class ArtifactCorrupted(UrzaError):
    def __init__(self, artifact_hash: str, actual: str, path: Path, reason: str) -> None:
        super().__init__(
            f"artifact {artifact_hash[:16]}… is corrupt ({reason}); moved aside from {path}; "
            "recompile it with `esper blueprints compile`"
        )
        self.artifact_hash = artifact_hash
        self.actual_hash = actual


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# torch.export's deserialiser keeps global state (one program at a time per process): loads from a
# warming thread and from the training thread take turns.
DESERIALIZING = threading.Lock()


class ArtifactLibrary:
    def __init__(self, root: Path, store: EventStore, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self.root = Path(root)
        self.store = store
        self.cache_size = cache_size
        self._cache: OrderedDict[str, ArtifactModule] = OrderedDict()
        self._lock = threading.Lock()
        self._tmp = self.root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._sweep_temporaries()

    def _sweep_temporaries(self) -> None:
        """Remove temporary files left by writers that died (their pid is in the name)."""
        for leftover in self._tmp.glob("*.tmp"):
            pid = int(leftover.name.split(".")[1])
            if pid == os.getpid() or not _alive(pid):
                leftover.unlink(missing_ok=True)

    def path_of(self, artifact_hash: str) -> Path:
        return artifact_path(self.root, artifact_hash)

    def exists(self, artifact_hash: str) -> bool:
        return self.path_of(artifact_hash).is_file()

    def artifact_hashes(self) -> list[str]:
        return stored_hashes(self.root)

    def put(self, data: bytes) -> str:
        """Store content and return its sha256; content already present is not written again."""
        artifact_hash = sha256_hex(data)
        target = self.path_of(artifact_hash)
        if target.is_file() and sha256_hex(target.read_bytes()) == artifact_hash:
            return artifact_hash
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._tmp / f"{artifact_hash}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        _fsync_directory(target.parent)
        metrics.ARTIFACTS_STORED.inc()
        metrics.ARTIFACT_BYTES.inc(len(data))
        return artifact_hash

    def read_verified(self, artifact_hash: str, blueprint_id: str = "") -> bytes:
        """The artifact's bytes after checking their sha256 (a mismatch is an event and an error)."""
        path = self.path_of(artifact_hash)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactMissing(
                f"artifact {artifact_hash[:16]}… is not in {self.root}; recompile it with "
                "`esper blueprints compile`"
            ) from None
        actual = sha256_hex(data)
        if actual != artifact_hash:
            self._quarantine(path, artifact_hash, actual, blueprint_id, "sha256 mismatch")
        return data

    def _quarantine(self, path: Path, expected: str, actual: str, blueprint_id: str, reason: str) -> NoReturn:
        corrupt_dir = self.root / "corrupt"
        corrupt_dir.mkdir(parents=True, exist_ok=True)
        os.replace(path, corrupt_dir / f"{expected}.{actual[:16]}.pt2")
        metrics.CORRUPT_ARTIFACTS.inc()
        event = new_envelope(
            "ArtifactCorrupted",
            stream_name("artifact", expected),
            pb.ArtifactCorrupted(
                artifact_hash=expected, blueprint_id=blueprint_id, actual_hash=actual, error=reason
            ),
            source=SOURCE,
        )
        self.store.append([event])
        raise ArtifactCorrupted(expected, actual, path, reason)

    def load(self, artifact_hash: str, blueprint_id: str = "") -> ArtifactModule:
        """The cached module for an artifact (verified on first load); callers take `.fresh()` copies."""
        with self._lock:
            cached = self._cache.get(artifact_hash)
            if cached is not None:
                self._cache.move_to_end(artifact_hash)
                metrics.CACHE_REQUESTS.labels("hit").inc()
                return cached
        metrics.CACHE_REQUESTS.labels("miss").inc()
        data = self.read_verified(artifact_hash, blueprint_id)
        try:
            with DESERIALIZING:
                module = module_from(unpack(data))
        except ArtifactFormatError as exc:
            raise ArtifactUnloadable(f"artifact {artifact_hash[:16]}… cannot be loaded: {exc}") from None
        with self._lock:
            self._cache[artifact_hash] = module
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            metrics.CACHE_ENTRIES.set(len(self._cache))
        return module

    def evict(self, artifact_hash: str) -> None:
        with self._lock:
            self._cache.pop(artifact_hash, None)
            metrics.CACHE_ENTRIES.set(len(self._cache))

    def is_cached(self, artifact_hash: str) -> bool:
        with self._lock:
            return artifact_hash in self._cache

    def cached(self) -> list[str]:
        with self._lock:
            return list(self._cache)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
