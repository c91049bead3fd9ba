"""The file store's index checkpoint (`INDEX`): what recovery would rebuild, saved so that open is fast.

Written when a store is closed; a disposable cache like snapshots. It holds, for each segment, its first
position, the end of its committed data, the CRC32C of the segment's bytes up to that end and its record
offsets; each stream's positions; the idempotency index's sorted runs. On open the checkpoint is trusted
only if its own CRC32C matches, its content is consistent (positions, offsets and counts agree with its
head; anything else, however it got there, is ignored and the log rescanned) *and* every segment's bytes
still hash to the recorded CRC32C (one C call
per chunk, at memory speed), so corruption anywhere in the checkpointed range still makes the store fall
back to a full record-by-record scan, which names the damaged record. Records after the checkpoint (appended
later or by a process that crashed) are scanned and recovered as usual.

Layout (little-endian): magic "EIDX", format version u32, CRC32C u32 of the rest; then head u64, segment
count u32, stream count u32, run count u32; per segment first u64, end u64, crc u32, offset count u64 and
the offsets (u32 each); per stream name length u16, name, count u64, positions (u64 each); per run count
u64, keys (u64 each), positions (u64 each).
"""

from __future__ import annotations

import os
import struct
from array import array
from dataclasses import dataclass
from pathlib import Path

import crc32c
import numpy as np

MAGIC = b"EIDX"
VERSION = 1
PREFIX = struct.Struct("<4sII")
COUNTS = struct.Struct("<QIII")
SEGMENT = struct.Struct("<QQIQ")
CHUNK = 16 << 20
CHANGED_SEGMENT_REASON = (
    "the segment's committed bytes differ from those INDEX recorded at close, although every record is "
    "well formed: records were replaced after they were committed; restore the log from a copy"
)


@dataclass
class SegmentIndex:
    first: int
    end: int
    crc: int
    offsets: array


@dataclass
class IndexState:
    head: int
    segments: list[SegmentIndex]
    streams: dict[str, array]
    runs: list[tuple[np.ndarray, np.ndarray]]


def save(path: Path, state: IndexState) -> None:
    parts = [COUNTS.pack(state.head, len(state.segments), len(state.streams), len(state.runs))]
    for segment in state.segments:
        parts.append(SEGMENT.pack(segment.first, segment.end, segment.crc, len(segment.offsets)))
        parts.append(segment.offsets.tobytes())
    for stream, positions in state.streams.items():
        name = stream.encode()
        parts.append(struct.pack("<H", len(name)) + name + struct.pack("<Q", len(positions)))
        parts.append(positions.tobytes())
    for keys, values in state.runs:
        parts.append(struct.pack("<Q", len(keys)))
        parts.append(keys.astype("<u8").tobytes())
        parts.append(values.astype("<u8").tobytes())
    rest = b"".join(parts)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(PREFIX.pack(MAGIC, VERSION, crc32c.crc32c(rest)) + rest)
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)
        raise


def load(path: Path) -> IndexState | None:
    """The checkpoint, or None when there is none, or it is damaged, inconsistent or from another format
    version: whatever the file holds, never an exception."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return None
    try:
        state = _parse(data)
    except (struct.error, ValueError, OverflowError, MemoryError):  # UnicodeDecodeError is a ValueError
        return None
    return state if state is not None and _consistent(state) else None


def _parse(data: bytes) -> IndexState | None:
    if len(data) < PREFIX.size + COUNTS.size:
        return None
    magic, version, checksum = PREFIX.unpack_from(data, 0)
    view = memoryview(data)[PREFIX.size :]
    if magic != MAGIC or version != VERSION or crc32c.crc32c(view) != checksum:
        return None
    head, segment_count, stream_count, run_count = COUNTS.unpack_from(view, 0)
    offset = COUNTS.size
    segments = []
    for _ in range(segment_count):
        first, end, crc, count = SEGMENT.unpack_from(view, offset)
        offset += SEGMENT.size
        offsets = array("I")
        offsets.frombytes(view[offset : offset + 4 * count])
        offset += 4 * count
        segments.append(SegmentIndex(first, end, crc, offsets))
    streams: dict[str, array] = {}
    for _ in range(stream_count):
        (length,) = struct.unpack_from("<H", view, offset)
        name = bytes(view[offset + 2 : offset + 2 + length]).decode()
        (count,) = struct.unpack_from("<Q", view, offset + 2 + length)
        offset += 10 + length
        positions = array("Q")
        positions.frombytes(view[offset : offset + 8 * count])
        offset += 8 * count
        streams[name] = positions
    runs = []
    for _ in range(run_count):
        (count,) = struct.unpack_from("<Q", view, offset)
        offset += 8
        keys = np.frombuffer(view[offset : offset + 8 * count], dtype="<u8").astype(np.uint64)
        offset += 8 * count
        values = np.frombuffer(view[offset : offset + 8 * count], dtype="<u8").astype(np.uint64)
        offset += 8 * count
        runs.append((keys, values))
    if offset != len(view):
        return None
    return IndexState(head, segments, streams, runs)


def _consistent(state: IndexState) -> bool:
    """Whether the checkpoint describes a log 1..head: contiguous segments with increasing record offsets
    inside their data, each position in exactly one stream (checked by count, range, order and sum) and one
    idempotency entry per event."""
    head = state.head
    first = 1
    for segment in state.segments:
        offsets = np.frombuffer(segment.offsets, dtype=np.uint32)
        if segment.first != first:
            return False
        if len(offsets) and (offsets[0] != 0 or offsets[-1] >= segment.end or np.any(np.diff(offsets) <= 0)):
            return False
        if not len(offsets) and segment.end != 0:
            return False
        first += len(offsets)
    if first - 1 != head:
        return False
    total = 0
    position_sum = 0
    for name, positions in state.streams.items():
        values = np.frombuffer(positions, dtype=np.uint64)
        if not name or not len(values) or values[0] < 1 or values[-1] > head or np.any(np.diff(values) <= 0):
            return False
        total += len(values)
        position_sum += int(values.sum(dtype=np.uint64))
    if total != head or position_sum != head * (head + 1) // 2:
        return False
    entries = 0
    for keys, values in state.runs:
        if len(keys) and (np.any(np.diff(keys) < 0) or values.min() < 1 or values.max() > head):
            return False
        entries += len(keys)
    return entries == head


def segment_crc(fd: int, end: int) -> int:
    """CRC32C of a segment's first `end` bytes."""
    crc = 0
    offset = 0
    while offset < end:
        chunk = os.pread(fd, min(CHUNK, end - offset), offset)
        if not chunk:
            return -1
        crc = crc32c.crc32c(chunk, crc)
        offset += len(chunk)
    return crc
