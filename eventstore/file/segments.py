"""The store directory's layout and the in-memory index every concern of the file store shares.

`LogIndex` is the one piece of mutable state behind a `FileStore`: the open segments, each stream's
positions, the idempotency index and the committed head. Recovery builds it, the writer extends it, reads
and the index checkpoint read it; each of them receives it rather than owning a copy.
"""

from __future__ import annotations

import bisect
import json
import os
from array import array
from pathlib import Path

from eventstore import wal
from eventstore.api import StoreUnavailable
from eventstore.idindex import IdIndex

MARKER = "STORE"
FORMAT = {"format": "esper-wal", "version": 1}
LOCK_FILE = "LOCK"
HEAD_FILE = "HEAD"
INDEX_FILE = "INDEX"
SNAPSHOT_DIR = "snapshots"
DEFAULT_SEGMENT_SIZE = 64 << 20


class Segment:
    __slots__ = ("crc", "end", "fd", "first", "name", "offsets")

    def __init__(self, first: int, fd: int) -> None:
        self.first = first
        self.name = wal.segment_name(first)
        self.fd = fd
        self.offsets = array("I")  # offset of position first + i at index i
        self.end = 0  # end of the last committed record
        self.crc = 0  # CRC32C of the bytes before end, for the index checkpoint


class LogIndex:
    """Open segments and the indexes of the records committed in them, up to `head`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.directory = str(path)
        self.segments: list[Segment] = []
        self.firsts: list[int] = []
        self.streams: dict[str, array] = {}
        self.ids = IdIndex()
        self.head = 0

    def segment_path(self, first: int) -> str:
        return os.path.join(self.directory, wal.segment_name(first))

    def open_segment(self, first: int, create: bool = False) -> Segment:
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        fd = os.open(self.segment_path(first), flags, 0o644)
        segment = Segment(first, fd)
        self.segments.append(segment)
        self.firsts.append(first)
        return segment

    def adopt(self, segments: list[Segment]) -> None:
        """Take over segments opened elsewhere (from the index checkpoint)."""
        self.segments = segments
        self.firsts = [segment.first for segment in segments]

    def segment_of(self, position: int) -> Segment:
        return self.segments[bisect.bisect_right(self.firsts, position) - 1]

    def stream_version(self, stream: str) -> int:
        positions_of = self.streams.get(stream)
        return len(positions_of) if positions_of is not None else 0

    def close_segments(self) -> None:
        for segment in self.segments:
            os.close(segment.fd)
        self.segments.clear()
        self.firsts.clear()


def prepare_directory(path: Path, create: bool) -> None:
    """Check the STORE marker of an existing store, or create an empty store's directory and marker."""
    marker = path / MARKER
    if path.exists() and not path.is_dir():
        raise StoreUnavailable(f"{path} is not a directory")
    if marker.exists():
        try:
            found = json.loads(marker.read_text())
        except (OSError, ValueError) as exc:
            raise StoreUnavailable(f"{path}: unreadable {MARKER} file ({exc})") from None
        if not isinstance(found, dict) or found.get("format") != FORMAT["format"]:
            raise StoreUnavailable(f"{path} is not an esper event store ({MARKER} says {found!r})")
        if found.get("version") != FORMAT["version"]:
            raise StoreUnavailable(
                f"{path}: store format version {found.get('version')} is not supported "
                f"(this esper reads version {FORMAT['version']})"
            )
        return
    if not path.exists() and not create:
        raise StoreUnavailable(f"{path} does not exist")
    if path.exists() and any(path.iterdir()):
        raise StoreUnavailable(f"{path} is not an esper event store (no {MARKER} file, not empty)")
    if not create:
        raise StoreUnavailable(f"{path} is not an esper event store (empty directory)")
    path.mkdir(parents=True, exist_ok=True)
    temporary = path / f".{MARKER}.tmp"
    temporary.write_text(json.dumps(FORMAT))
    os.replace(temporary, marker)
    fsync_directory(path)


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
