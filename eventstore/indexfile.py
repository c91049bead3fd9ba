"""The file store's index checkpoint (`INDEX`): what recovery would rebuild, saved so that open is fast.

Written when a store is closed; a disposable cache like snapshots. It holds, for each segment, its first
position, the end of its committed data, the CRC32C of the segment's bytes up to that end and its record
offsets; each stream's positions; the idempotency index's sorted runs. On open the checkpoint is trusted
only if its own CRC32C matches, its content is consistent (`load`: positions, offsets and counts agree
with its head), every segment's bytes still hash to the recorded CRC32C (one C call over the mapped
segment) *and* it describes those bytes (`describes`: every record header it points at, each stream's
name, versions and fingerprints). Anything else, however it got there, is ignored and the log rescanned
record by record, which names a damaged record. Records after the checkpoint (appended
later or by a process that crashed) are scanned and recovered as usual.

Layout (little-endian): magic "EIDX", format version u32, CRC32C u32 of the rest; then head u64, segment
count u32, stream count u32, run count u32; per segment first u64, end u64, crc u32, offset count u64 and
the offsets (u32 each); per stream name length u16, name, count u64, positions (u64 each); per run count
u64, keys (u64 each), positions (u64 each).
"""

from __future__ import annotations

import bisect
import os
import struct
from array import array
from dataclasses import dataclass
from pathlib import Path

import crc32c
import numpy as np

from eventstore import wal

MAGIC = b"EIDX"
VERSION = 1
PREFIX = struct.Struct("<4sII")
COUNTS = struct.Struct("<QIII")
SEGMENT = struct.Struct("<QQIQ")


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
        if len(offsets) and (
            offsets[0] != 0 or offsets[-1] >= segment.end or np.any(offsets[1:] <= offsets[:-1])
        ):
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
        if (
            not name
            or not len(values)
            or values[0] < 1
            or values[-1] > head
            or np.any(values[1:] <= values[:-1])
        ):
            return False
        total += len(values)
        position_sum += int(values.sum(dtype=np.uint64))
    if total != head or position_sum != head * (head + 1) // 2:
        return False
    entries = 0
    for keys, values in state.runs:
        if len(keys) != len(values):
            return False
        if len(keys) and (np.any(keys[1:] < keys[:-1]) or values.min() < 1 or values.max() > head):
            return False
        entries += len(keys)
    return entries == head


# wal.HEADER's fields, to read every record header a checkpoint points at in one vectorised gather
RECORD_HEADER = np.dtype(
    [
        ("magic", "S4"),
        ("length", "<u4"),
        ("crc", "<u4"),
        ("position", "<u8"),
        ("version", "<u8"),
        ("fingerprint", "<u8"),
        ("stream_len", "<u2"),
        ("flags", "<u2"),
    ]
)


def describes(state: IndexState, data: list[memoryview]) -> bool:
    """Whether a consistent checkpoint (`load`) really describes the segments whose committed bytes are
    `data`; see _describes. Never raises: anything unexpected means no."""
    try:
        return _describes(state, data)
    except (IndexError, ValueError, OverflowError):
        return False


def _describes(state: IndexState, data: list[memoryview]) -> bool:
    """Whether the checkpoint describes the segments whose committed bytes are `data` (one per
    checkpointed segment, CRC-checked by the caller): every offset points at the record of
    its position and the records follow on to the segment's end, each record's stream, stream version and
    event-id fingerprint are the ones the checkpoint indexes it under. Vectorised (numpy) over the record
    headers, plus one name comparison per stream: a few passes over ~50 bytes per event, transient.
    A checkpoint edited and resealed, however consistent it looks, is then rescanned, never trusted."""
    head = state.head
    fingerprints = np.empty(head, np.uint64)
    versions = np.empty(head, np.uint64)
    name_lengths = np.empty(head, np.uint16)
    for saved, segment in zip(state.segments, data, strict=True):
        headers = record_headers(segment, saved.offsets)
        if headers is None:
            return False
        if not len(headers):
            continue
        at = np.frombuffer(saved.offsets, dtype=np.uint32).astype(np.int64)
        ends = at + wal.HEADER_SIZE + headers["length"].astype(np.int64)
        if (
            np.any(headers["magic"] != wal.MAGIC)
            or np.any(headers["position"] != np.arange(saved.first, saved.first + len(at), dtype=np.uint64))
            or np.any(ends[:-1] != at[1:])
            or ends[-1] != saved.end
            or not headers["flags"][-1] & wal.FLAG_COMMIT
        ):
            return False
        part = slice(saved.first - 1, saved.first - 1 + len(at))
        fingerprints[part], versions[part], name_lengths[part] = (
            headers["fingerprint"],
            headers["version"],
            headers["stream_len"],
        )
    names = list(state.streams)
    encoded = [name.encode() for name in names]
    counts = np.fromiter((len(state.streams[name]) for name in names), np.int64, len(names))
    positions = np.concatenate([np.frombuffer(state.streams[name], np.uint64) for name in names]) - 1
    covered = np.zeros(head, bool)
    covered[positions] = True
    stream_of = np.empty(head, np.int64)
    stream_of[positions] = np.repeat(np.arange(len(names)), counts)
    version_of = np.empty(head, np.uint64)
    version_of[positions] = np.arange(1, head + 1) - np.repeat(np.cumsum(counts) - counts, counts)
    lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
    if not covered.all() or np.any(versions != version_of) or np.any(name_lengths != lengths[stream_of]):
        return False
    keys = np.concatenate([keys for keys, _ in state.runs]) if state.runs else np.empty(0, np.uint64)
    values = np.concatenate([values for _, values in state.runs]) if state.runs else np.empty(0, np.uint64)
    covered[:] = False
    covered[values.astype(np.int64) - 1] = True
    fingerprint_of = np.empty(head, np.uint64)
    fingerprint_of[values.astype(np.int64) - 1] = keys
    if not covered.all() or np.any(fingerprint_of != fingerprints):
        return False
    firsts = [saved.first for saved in state.segments]
    for name, name_bytes in zip(names, encoded, strict=True):
        position = int(state.streams[name][0])
        index = bisect.bisect_right(firsts, position) - 1
        body = state.segments[index].offsets[position - firsts[index]] + wal.HEADER_SIZE
        if bytes(data[index][body : body + len(name_bytes)]) != name_bytes:
            return False
    return True


def record_headers(data: memoryview | bytes, offsets: array | np.ndarray) -> np.ndarray | None:
    """The record headers at offsets in data (None when an offset points past the data): one row copy per
    record out of a sliding window over the bytes (a view, no copy of the segment)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    at = np.frombuffer(offsets, dtype=np.uint32).astype(np.int64)
    if not len(at):
        return np.empty(0, RECORD_HEADER)
    if at[-1] + wal.HEADER_SIZE > len(raw):
        return None
    windows = np.lib.stride_tricks.sliding_window_view(raw, wal.HEADER_SIZE)
    return np.ascontiguousarray(windows[at]).view(RECORD_HEADER)[:, 0]
