"""The store directory's layout and the in-memory index every concern of the file store shares.

`LogIndex` is the one piece of mutable state behind a `FileStore`: the open segments, each stream's
positions, the idempotency index and the committed head. Recovery builds it, the writer extends it, reads
and the index checkpoint read it; each of them receives it rather than owning a copy.
"""

from __future__ import annotations

import bisect
import contextlib
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
MARKER_LIMIT = 4096  # a STORE marker is a few dozen bytes; more is not one


class Segment:
    __slots__ = ("allocated", "crc", "end", "fd", "first", "name", "offsets")

    def __init__(self, first: int, fd: int) -> None:
        self.first = first
        self.name = wal.segment_name(first)
        self.fd = fd
        self.offsets = array("I")  # offset of position first + i at index i
        self.end = 0  # end of the last committed record
        self.crc = 0  # CRC32C of the bytes before end, for the index checkpoint
        self.allocated = 0  # where the zeros this process's writer extended the file with end


class LogIndex:
    """Open segments and the indexes of the records committed in them, up to `head`."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = path
        self.directory = str(path)
        self.segment_flags = os.O_RDONLY if read_only else os.O_RDWR
        self.segments: list[Segment] = []
        self.firsts: list[int] = []
        self.streams: dict[str, array] = {}
        self.ids = IdIndex()
        self.head = 0

    def segment_path(self, first: int) -> str:
        return os.path.join(self.directory, wal.segment_name(first))

    def open_segment(self, first: int, create: bool = False) -> Segment:
        flags = self.segment_flags | (os.O_CREAT | os.O_EXCL if create else 0)
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


def read_marker(path: Path) -> None:
    """Check the STORE marker of the store at path: StoreUnavailable unless it is this format's."""
    marker = path / MARKER
    try:
        found = json.loads(marker.read_bytes()[:MARKER_LIMIT])
    except FileNotFoundError:
        raise StoreUnavailable(f"{path} is not an esper event store (no {MARKER} file)") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise StoreUnavailable(f"{path}: unreadable {MARKER} file ({exc})") from None
    if not isinstance(found, dict) or found.get("format") != FORMAT["format"]:
        raise StoreUnavailable(f"{path} is not an esper event store ({MARKER} says {found!r:.200})")
    if found.get("version") != FORMAT["version"]:
        raise StoreUnavailable(
            f"{path}: store format version {found.get('version')!r:.40} is not supported "
            f"(this esper reads version {FORMAT['version']})"
        )


def prepare_directory(path: Path, create: bool) -> None:
    """Check the STORE marker of an existing store, or create an empty store's directory and marker.

    A directory holding nothing but the marker's temporary file (a creation that died) counts as empty.
    """
    marker = path / MARKER
    temporary = path / f".{MARKER}.tmp"
    if path.exists() and not path.is_dir():
        raise StoreUnavailable(f"{path} is not a directory")
    if marker.exists():
        read_marker(path)
        return
    if not path.exists() and not create:
        raise StoreUnavailable(f"{path} does not exist")
    if path.exists() and any(entry != temporary for entry in path.iterdir()):
        raise StoreUnavailable(f"{path} is not an esper event store (no {MARKER} file, not empty)")
    if not create:
        raise StoreUnavailable(f"{path} is not an esper event store (empty directory)")
    path.mkdir(parents=True, exist_ok=True)
    temporary.write_text(json.dumps(FORMAT))
    os.replace(temporary, marker)
    fsync_directory(path)


def remove_leftovers(path: Path) -> list[str]:
    """Delete temporary files (`*.tmp`) that a process which is no longer running left in the store's
    directory or its snapshots; the names removed. Temporary files of running processes are kept: their
    names carry the writer's pid."""
    removed = []
    for directory in (path, path / SNAPSHOT_DIR):
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            continue
        for name in names:
            if name.endswith(".tmp") and not _writer_alive(name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(directory / name)
                    removed.append(name)
    return removed


def _writer_alive(temporary_name: str) -> bool:
    """Whether the process whose pid the temporary file's name carries (`<base>.<pid>[.<thread>].tmp`)
    is still running; False when the name carries no pid."""
    for part in temporary_name.split(".")[1:-1]:
        if part.isdigit() and 0 < int(part) < 1 << 22:
            try:
                os.kill(int(part), 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
    return False


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
