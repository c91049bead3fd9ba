"""Per-stream snapshots of the file store: a disposable cache under `snapshots/`, one file per stream.

A snapshot file is `magic "ESNP", CRC32C u32 of the rest`, then schema_version u32, version u64, stream
length u16, the stream name and the data. A file that is damaged, belongs to another stream (hash
collision), has another schema version or is ahead of the stream (the log was restored from an older
copy) is deleted and reported as no snapshot.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import threading
from collections.abc import Callable
from pathlib import Path

import crc32c

from eventstore.api import EventStoreError, Snapshot
from eventstore.file.segments import SNAPSHOT_DIR

SNAPSHOT_MAGIC = b"ESNP"
SNAPSHOT_PREFIX = struct.Struct("<4sI")  # magic, crc32c of the rest
SNAPSHOT_FIELDS = struct.Struct("<IQH")  # the rest: schema_version, version, stream_len, then stream, data


class SnapshotCache:
    """Read-only, snapshots are read but neither saved nor deleted."""

    def __init__(self, store_path: Path, read_only: bool = False) -> None:
        self.directory = store_path / SNAPSHOT_DIR
        self.read_only = read_only

    def path_of(self, stream: str) -> Path:
        return self.directory / f"{hashlib.sha256(stream.encode()).hexdigest()[:40]}.snap"

    def save(self, snapshot: Snapshot) -> None:
        if self.read_only:
            raise EventStoreError(f"{self.directory.parent} is open read-only: snapshots are not saved")
        path = self.path_of(snapshot.stream)
        path.parent.mkdir(exist_ok=True)
        stream = snapshot.stream.encode()
        rest = (
            SNAPSHOT_FIELDS.pack(snapshot.schema_version, snapshot.version, len(stream))
            + stream
            + snapshot.data
        )
        temporary = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        temporary.write_bytes(SNAPSHOT_PREFIX.pack(SNAPSHOT_MAGIC, crc32c.crc32c(rest)) + rest)
        os.replace(temporary, path)

    def load(self, stream: str, schema_version: int, stream_version: Callable[[], int]) -> Snapshot | None:
        """The stream's usable snapshot; `stream_version()` is the stream's version in the log."""
        path = self.path_of(stream)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        snapshot = decode_snapshot(data)
        usable = (
            snapshot is not None
            and snapshot.stream == stream
            and snapshot.schema_version == schema_version
            and snapshot.version <= stream_version()
        )
        if not usable:
            if self.read_only:
                return None
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return None
        return snapshot


def decode_snapshot(data: bytes) -> Snapshot | None:
    if len(data) < SNAPSHOT_PREFIX.size:
        return None
    magic, checksum = SNAPSHOT_PREFIX.unpack_from(data)
    rest = data[SNAPSHOT_PREFIX.size :]
    if magic != SNAPSHOT_MAGIC or crc32c.crc32c(rest) != checksum or len(rest) < SNAPSHOT_FIELDS.size:
        return None
    schema_version, version, stream_len = SNAPSHOT_FIELDS.unpack_from(rest)
    start = SNAPSHOT_FIELDS.size
    stream = rest[start : start + stream_len].decode("utf-8", "replace")
    return Snapshot(stream, version, schema_version, rest[start + stream_len :])
