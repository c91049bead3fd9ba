"""Batch operations of the file store's append and replay hot paths, compiled where possible.

`eventstore._walc` (eventstore/walc/, built in place by `pip install -e`, which `bash ops/bootstrap.sh`
runs) does each of them for a whole batch in one C call; where it is not built, the pure-Python versions
here do the same with C-level maps, and produce the same objects byte for byte
(tests/eventstore/test_walbatch.py holds the two to each other). `COMPILED` says which one runs.

- `keys(events, payloads)`: each event's stream, and the event-id fingerprints (wal.fingerprints) as an
  array("Q"); InvalidEvent when an event lacks an id, a type or a stream. The compiled version reads them
  from the serialized envelopes `payloads` (one pass over bytes instead of three attribute reads per
  event). The operations below that take fingerprints (`fps`) take that array or a list of ints; the
  compiled ones read the array in place (no int object per event).
- `next_versions(streams, pending, known)`: each event's stream version, advancing `pending` (stream ->
  version counting what this group wrote so far) in place; a stream not in `pending` starts at the
  number of positions `known` holds for it.
- `frame_batch(first, versions, fps, streams, payloads, base)`: the framed records (wal.frames) as one
  bytes object, and their offsets from `base` as native uint32 bytes (for the segment's array("I")).
- `frame_new(first, streams, fps, payloads, pending, known, base, record=True)`: next_versions then
  frame_batch, in one compiled call (the writer's: streams grouped once, versions never made ints);
  `record=False` leaves `pending` as it was (a group's last request: nobody reads the versions after it).
- `rebase(offsets, by)`: offsets (native uint32 bytes) less `by` (a batch framed again elsewhere).
- `distinct(fps)`: whether no fingerprint of the list occurs twice.
- `index_streams(known, streams, first)`: append positions first.. to each stream's array("Q").
- `FpTable()`: the idempotency index's recent entries, fingerprint -> positions (several where
  fingerprints collide): `add_run(fps, first)`, `add_many(fps, positions)`, `find(fps)` ({index in fps:
  ascending positions}), `items()` (keys and positions as native uint64 bytes), `clear()`, `len()`.
- `stamped_bodies(data, offsets, first)`: the envelopes of the records at `offsets` in `data` (positions
  first.. onwards) with stream_version and global_position appended (wal.stamp), once the headers are held
  to the index; `BadIndex(message, offset, index)` where they do not match.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from itertools import accumulate, starmap
from operator import attrgetter

import numpy as np

from eventstore import wal
from eventstore.api import InvalidEvent
from leyline import pb

try:
    from eventstore import _walc
except ImportError:  # not built (no compiler at install): the pure-Python versions below
    _walc = None  # type: ignore[assignment]

COMPILED = _walc is not None
EVENT_ID, STREAM, EVENT_TYPE = attrgetter("event_id"), attrgetter("stream"), attrgetter("event_type")


class BadIndex(ValueError):
    """Record headers that do not match the index: args are (message, offset, index in the batch)."""


Fps = list[int] | array  # fingerprints: keys' array("Q"), or a list of ints


def keys_python(events: Sequence[pb.EventEnvelope], payloads: list[bytes]) -> tuple[list[str], array]:
    ids = list(map(EVENT_ID, events))
    streams = list(map(STREAM, events))
    if not (all(ids) and all(streams) and all(map(EVENT_TYPE, events))):
        raise InvalidEvent("every event needs an event_id, an event_type and a stream")
    return streams, array("Q", wal.fingerprints(ids))


def keys(events: Sequence[pb.EventEnvelope], payloads: list[bytes]) -> tuple[list[str], array]:
    if _walc is not None:
        found = _walc.keys(payloads)
        if found is not None:
            return found
    return keys_python(events, payloads)  # also where the compiled reader found something unusual


def next_versions_python(streams: list[str], pending: dict[str, int], known: dict[str, array]) -> list[int]:
    for stream in set(streams).difference(pending):
        positions = known.get(stream)
        pending[stream] = len(positions) if positions is not None else 0
    versions: list[int] = []
    add = versions.append
    for stream in streams:
        pending[stream] = version = pending[stream] + 1
        add(version)
    return versions


def frame_batch_python(
    first: int, versions: list[int], fps: Fps, streams: list[str], payloads: list[bytes], base: int
) -> tuple[bytes, bytes]:
    records = wal.frames(first, versions, list(fps), list(map(str.encode, streams)), payloads)
    offsets = array("I", accumulate(map(len, records[:-1]), initial=base))
    return b"".join(records), offsets.tobytes()


def frame_new_python(
    first: int,
    streams: list[str],
    fps: Fps,
    payloads: list[bytes],
    pending: dict[str, int],
    known: dict[str, array],
    base: int,
    record: bool = True,
) -> tuple[bytes, bytes]:
    versions = next_versions(streams, pending if record else dict(pending), known)
    return frame_batch(first, versions, fps, streams, payloads, base)


def rebase(offsets: bytes, by: int) -> bytes:
    return (np.frombuffer(offsets, np.uint32) - np.uint32(by)).tobytes()


def distinct_python(fps: Fps) -> bool:
    return len(set(fps)) == len(fps)


def index_streams_python(known: dict[str, array], streams: list[str], first: int) -> None:
    for position, stream in enumerate(streams, first):
        positions = known.get(stream)
        if positions is None:
            positions = known[stream] = array("Q")
        positions.append(position)


def stamped_bodies_python(data: bytes, offsets: array | bytes, first: int) -> list[bytes]:
    from eventstore.indexfile import record_headers

    at = np.frombuffer(offsets, np.uint32)
    if not len(at):
        return []
    starts = at.astype(np.int64)
    past = starts + wal.HEADER_SIZE > len(data)
    headers = record_headers(data, np.where(past, 0, at).astype(np.uint32))
    assert headers is not None, "every offset gathered is inside the data"
    ends = starts + wal.HEADER_SIZE + headers["length"]
    bad = (
        (headers["magic"] != wal.MAGIC)
        | (headers["position"] != np.arange(first, first + len(at), dtype=np.uint64))
        | (ends > len(data))
        | (headers["stream_len"] > headers["length"])
    )
    bad[:-1] |= ends[:-1] != starts[1:]
    if past.any() or bad.any():
        index = int(np.argmax(past | bad))
        message = (
            "the index points past the segment" if past[index] else "the index does not match the segment"
        )
        raise BadIndex(message, int(at[index]), index)
    bodies = map(
        data.__getitem__,
        map(slice, (starts + wal.HEADER_SIZE + headers["stream_len"]).tolist(), ends.tolist()),
    )
    return list(
        starmap(
            wal.stamp, zip(bodies, headers["version"].tolist(), range(first, first + len(at)), strict=True)
        )
    )


def stamped_bodies_compiled(data: bytes, offsets: array | bytes, first: int) -> list[bytes]:
    assert _walc is not None
    try:
        return _walc.stamped_bodies(data, offsets, first)
    except ValueError as exc:
        if len(exc.args) == 3:
            raise BadIndex(*exc.args) from None
        raise


if _walc is not None:
    next_versions = _walc.next_versions
    distinct = _walc.distinct
    frame_batch = _walc.frame_batch
    frame_new = _walc.frame_new
    stamped_bodies = stamped_bodies_compiled

    def index_streams(known: dict[str, array], streams: list[str], first: int) -> None:
        assert _walc is not None
        _walc.index_streams(known, streams, first, _new_positions)

else:
    next_versions = next_versions_python
    distinct = distinct_python
    frame_batch = frame_batch_python
    frame_new = frame_new_python
    index_streams = index_streams_python
    stamped_bodies = stamped_bodies_python


class FpTablePython:
    """The pure-Python FpTable: fingerprint -> positions (a fingerprint may hold several), in dicts."""

    def __init__(self) -> None:
        self._first: dict[int, int] = {}
        self._more: dict[int, list[int]] = {}  # positions after the first under a fingerprint
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add_run(self, fps: Fps, first: int) -> None:
        self.add_many(fps, range(first, first + len(fps)))

    def add_many(self, fps: Fps, positions: list[int] | array | range) -> None:
        held = self._first
        if len(set(fps)) == len(fps) and held.keys().isdisjoint(fps):
            held.update(zip(fps, positions, strict=True))
        else:
            for fp, position in zip(fps, positions, strict=True):
                if fp in held:
                    self._more.setdefault(fp, []).append(position)
                else:
                    held[fp] = position
        self._count += len(fps)

    def find(self, fps: Fps) -> dict[int, list[int]]:
        held, more = self._first, self._more
        if held.keys().isdisjoint(fps):
            return {}
        return {index: sorted([held[fp], *more.get(fp, ())]) for index, fp in enumerate(fps) if fp in held}

    def items(self) -> tuple[bytes, bytes]:
        keys = array("Q", self._first.keys())
        values = array("Q", self._first.values())
        for fp, positions in self._more.items():
            keys.extend([fp] * len(positions))
            values.extend(positions)
        return keys.tobytes(), values.tobytes()

    def clear(self) -> None:
        self._first, self._more, self._count = {}, {}, 0

    def nbytes(self) -> int:
        return self._count * 120  # a dict entry with its two ints, roughly


FpTable: type[FpTablePython] = _walc.FpTable if _walc is not None else FpTablePython  # type: ignore[assignment]


def _new_positions() -> array:
    return array("Q")
