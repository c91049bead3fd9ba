"""Record framing and segment scanning for the file store's write-ahead log.

A segment is a file named by the global position of its first record (`00000000000000000001.wal`).
Each record is framed as

    magic(4) body_len(u32) crc32c(u32) | position(u64) stream_version(u64) fingerprint(u64)
    stream_len(u16) flags(u16) | body = stream (utf-8) + serialized EventEnvelope

The envelope is stored as the caller built it; stream_version and global_position, assigned by the store,
live in the frame header and are set on the envelope when it is read.

little-endian, 40 bytes of header. The CRC32C covers everything after the crc field (the rest of the
header and the body), so a flipped bit in a position, a stream name or a payload is caught. `flags` bit 0
marks the last record of an append batch: a batch is visible only once its commit record is there, which
is what makes a multi-event append atomic across a crash. The magic lets recovery look for a valid record
*after* a damaged one, which tells a torn tail (nothing valid follows) from damage in the middle.
The stream name and the event-id fingerprint are in the frame so that recovery rebuilds the indexes
without parsing protobuf.

The writer extends a segment ahead of its data with zeros (an fdatasync into space already written is
cheaper than one that also grows the file), so the file size is not the end of the data: a scan ends
cleanly where only zeros follow the last frame (a frame never starts with a zero byte: MAGIC), and the
committed heads recorded in INDEX and HEAD, never the file size, say how much data there must be. A
write into those zeros can reach the disk page by page in any order: a crash may leave a page of zeros
inside an unfinished write, and what follows that page is the torn write too (valid_frame_after).
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from itertools import repeat
from operator import add
from typing import NamedTuple

import crc32c

MAGIC = b"\xe5\x5e\x01\x7a"
PREFIX = struct.Struct("<4sII")
TAIL = struct.Struct("<QQQHH")
HEADER = struct.Struct("<4sIIQQQHH")  # PREFIX and TAIL in one
HEADER_SIZE = PREFIX.size + TAIL.size
FLAG_COMMIT = 1
MAX_BODY = 1 << 30
SEGMENT_PATTERN = re.compile(r"^(\d{20})\.wal$")
PAGE = 4096  # the unit a write reaches the disk in
ZERO_PAGE = bytes(PAGE)


def segment_name(first_position: int) -> str:
    return f"{first_position:020d}.wal"


def segment_first_position(name: str) -> int | None:
    match = SEGMENT_PATTERN.match(name)
    return int(match.group(1)) if match else None


def fingerprints(event_ids: list[str]) -> list[int]:
    """64-bit fingerprints of event ids, the keys of the idempotency index.

    Two CRCs over different polynomials (CRC-32 and CRC-32C), each implemented in C: several times
    cheaper than a cryptographic digest, and collisions are harmless (the store confirms every hit).
    """
    crc32, crc32_c = zlib.crc32, crc32c.crc32c
    return [(crc32(data) << 32) | crc32_c(data) for data in map(str.encode, event_ids)]


def zeros_from(buf: bytes | memoryview, offset: int) -> bool:
    """Whether every byte of buf from offset on is zero (the space a writer extended ahead)."""
    rest = memoryview(buf)[offset:]
    return rest.nbytes == 0 or rest == bytes(rest.nbytes)


def varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    if value < 0x4000:
        return bytes((value & 0x7F | 0x80, value >> 7))
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def stamp(envelope_bytes: bytes, stream_version: int, position: int) -> bytes:
    """The envelope with stream_version (field 4) and global_position (field 5) set.

    Protobuf keeps the last value of a repeated scalar field, so appending the two fields to the
    serialized envelope is equivalent to setting them, without copying the message.
    """
    return envelope_bytes + b"\x20" + varint(stream_version) + b"\x28" + varint(position)


def frames(
    first_position: int, versions: list[int], fps: list[int], streams: list[bytes], payloads: list[bytes]
) -> list[bytes]:
    """The framed records of one append batch, at first_position onwards; the last carries FLAG_COMMIT.

    Every per-record step (struct packing, joins, CRC32C) is a C-level map: the append hot path runs no
    Python bytecode per record here.
    """
    count = len(payloads)
    stream_lengths = list(map(len, streams))
    body_lengths = list(map(add, stream_lengths, map(len, payloads)))
    flags = [0] * count
    flags[-1] = FLAG_COMMIT
    positions = range(first_position, first_position + count)
    tails = map(TAIL.pack, positions, versions, fps, stream_lengths, flags)
    bodies = list(map(b"".join, zip(tails, streams, payloads, strict=True)))
    prefixes = map(PREFIX.pack, repeat(MAGIC), body_lengths, map(crc32c.crc32c, bodies))
    return list(map(add, prefixes, bodies))


class Frame(NamedTuple):
    offset: int
    end: int
    position: int
    stream_version: int
    fingerprint: int
    stream: str
    commit: bool


class Scan:
    """Iterate the valid frames of `buf` from `offset`; stop at the first problem and say what it was.

    `problem` stays None when the buffer ends exactly at a frame boundary, or where only zeros follow the
    last frame (space extended ahead; `offset` then stops at the first zero). Positions must follow on from
    `next_position`; a frame with another position is a problem too (a hole or a duplicate).
    """

    def __init__(self, buf: bytes, offset: int, next_position: int) -> None:
        self.buf = buf
        self.offset = offset
        self.next_position = next_position
        self.problem: str | None = None

    def __iter__(self) -> Iterator[Frame]:
        buf = self.buf
        size = len(buf)
        offset = self.offset
        position = self.next_position
        view = memoryview(buf)
        unpack_prefix = PREFIX.unpack_from
        unpack_tail = TAIL.unpack_from
        crc = crc32c.crc32c
        while offset < size:
            if size - offset < HEADER_SIZE or buf[offset] == 0:
                if zeros_from(view, offset):
                    break
                if size - offset < HEADER_SIZE:
                    self.problem = f"incomplete header ({size - offset} bytes)"
                    break
            magic, body_len, checksum = unpack_prefix(buf, offset)
            if magic != MAGIC:
                self.problem = "bad magic"
                break
            end = offset + HEADER_SIZE + body_len
            if body_len > MAX_BODY:
                self.problem = f"implausible record length {body_len}"
                break
            if end > size:
                self.problem = f"record runs past the end of the data ({end - size} bytes missing)"
                break
            if crc(view[offset + PREFIX.size : end]) != checksum:
                self.problem = "CRC32C mismatch"
                break
            record_position, stream_version, fp, stream_len, flags = unpack_tail(buf, offset + PREFIX.size)
            if record_position != position:
                self.problem = f"record holds position {record_position}, expected {position}"
                break
            body = offset + HEADER_SIZE
            stream = bytes(view[body : body + stream_len]).decode("utf-8", "replace")
            yield Frame(offset, end, position, stream_version, fp, stream, bool(flags & FLAG_COMMIT))
            position += 1
            offset = end
            self.offset = offset
            self.next_position = position


def valid_frame_after(buf: bytes, offset: int, min_position: int, base: int = 0) -> int | None:
    """Offset of a CRC-valid frame after `offset` holding a position >= min_position, if any, before the
    first page that holds only zeros from `offset` on (zero_page_after; `base`: buf's offset in its
    segment, for the page boundaries).

    Used to tell damage in the middle (something valid follows) from a torn tail (nothing does). A write
    into space extended ahead with zeros reaches the disk page by page in no set order, so a crash can
    leave a later page of it written and an earlier one as it was (zeros after the data before it): what
    follows such a page is the same unfinished write, not records that damage cut off (a committed head
    still guards what was made durable).
    """
    view = memoryview(buf)
    start = offset + 1
    lost = zero_page_after(buf, offset, base)
    while (found := buf.find(MAGIC, start, lost)) != -1:
        start = found + 1
        if lost - found < HEADER_SIZE:
            return None
        _, body_len, checksum = PREFIX.unpack_from(buf, found)
        end = found + HEADER_SIZE + body_len
        if body_len > MAX_BODY or end > lost:
            continue
        if crc32c.crc32c(view[found + PREFIX.size : end]) == checksum:
            position = TAIL.unpack_from(buf, found + PREFIX.size)[0]
            if position >= min_position:
                return found
    return None


def zero_page_after(buf: bytes, offset: int, base: int = 0) -> int:
    """Where the first page at or after `offset` that holds only zeros from `offset` on starts (offset
    itself when the rest of its page is zeros; pages aligned in the segment, of which buf starts at
    `base`); len(buf) if there is none."""
    boundary = offset + (-(base + offset) % PAGE)
    if offset < boundary <= len(buf) and buf[offset:boundary] == ZERO_PAGE[: boundary - offset]:
        return offset
    start = offset
    while (found := buf.find(ZERO_PAGE, start)) != -1:
        aligned = found + (-(base + found) % PAGE)
        if buf[aligned : aligned + PAGE] == ZERO_PAGE:
            return aligned
        start = aligned + 1
    return len(buf)
