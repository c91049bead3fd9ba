"""Reads of the file store: framing, CRC check, filtering and decoding in one loop, and subscriptions.

Reads see what `LogIndex` has indexed; the store façade first catches up with other processes' appends
when the HEAD hint moved. Every record read has its CRC32C checked again: damage since the log was opened
raises CorruptLogError, it is never returned. A read that covers most of a segment (a replay) checks the
segment's committed bytes with one CRC32C against the one the index holds, then decodes with C-level maps;
shorter or filtered reads check and decode record by record.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from itertools import islice

import crc32c

from eventstore import wal, walbatch
from eventstore.api import ALL_EVENTS, CorruptLogError, EventFilter, EventStoreError
from eventstore.file.head import CROSS_PROCESS_POLL_S, HeadWaiters
from eventstore.file.segments import LogIndex, Segment
from eventstore.subscription import PollingSubscription
from leyline import pb

PARSE = pb.EventEnvelope.FromString
READ_CHUNK = 1 << 20
# A read covering more than this many records, and half its segment, reads them record by record, then
# checks the segment's CRC32C as a whole and decodes the rest without a per-record check (`_stamped`).
BULK_MIN = 4096
DECODE_CHUNK = 4096  # records stamped at a time by a bulk read (bounds the copies held at once)


class Reader:
    def __init__(self, log: LogIndex) -> None:
        self.log = log

    def read_stream(
        self, stream: str, from_version: int = 1, limit: int | None = None
    ) -> list[pb.EventEnvelope]:
        positions_of = self.log.streams.get(stream)
        if positions_of is None:
            return []
        start = max(from_version, 1) - 1
        stop = len(positions_of) if limit is None else min(len(positions_of), start + limit)
        return [self.read_envelope(position) for position in positions_of[start:stop]]

    def read_all(
        self, from_position: int, event_filter: EventFilter, limit: int | None, to_position: int | None
    ) -> Iterable[pb.EventEnvelope]:
        head = self.log.head
        last = head if to_position is None else min(to_position, head)
        matching = self.matching(max(from_position, 1), last, event_filter)
        return matching if limit is None else islice(matching, max(limit, 0))

    def matching(self, first: int, last: int, event_filter: EventFilter) -> Iterator[pb.EventEnvelope]:
        """The events first..last that match, each record's CRC32C checked (one segment at a time)."""
        segment_of = self.log.segment_of
        position = first
        unfiltered = event_filter == ALL_EVENTS
        while position <= last:
            segment = segment_of(position)
            stop = min(last, segment.first + len(segment.offsets) - 1)
            if unfiltered and stop - position >= max(BULK_MIN, len(segment.offsets) // 2):
                # a long read: its first records one by one (a reader that stops early, a subscription
                # taking a page, pays for no more), the rest in bulk
                yield from self._records(segment, position, position + BULK_MIN - 1, event_filter)
                position += BULK_MIN
                whole = self._whole_segment(segment)
                if whole is not None:
                    for bodies in _stamped(whole, segment, position, stop):
                        yield from map(PARSE, bodies)
                    position = stop + 1
                    continue
            yield from self._records(segment, position, stop, event_filter)
            position = stop + 1

    def _whole_segment(self, segment: Segment) -> bytes | None:
        """The segment's committed bytes, read at once, if their CRC32C is the one recorded as they were
        indexed (one C call instead of one per record). None otherwise, and the caller reads record by
        record, which names the damage: a mismatch here may also be an append of this process's writer
        landing between our reads of the segment's end and CRC, which only costs this fast path."""
        end, crc = segment.end, segment.crc
        data = os.pread(segment.fd, end, 0)
        return data if len(data) == end and crc32c.crc32c(data) == crc else None

    def _records(
        self, segment: Segment, position: int, stop: int, event_filter: EventFilter
    ) -> Iterator[pb.EventEnvelope]:
        """Records position..stop of a segment: framing, CRC check, filtering and decoding in one loop."""
        streams, categories, types = event_filter.streams, event_filter.categories, event_filter.event_types
        by_stream = bool(streams or categories)
        unpack, header_size, crc_start = wal.HEADER.unpack_from, wal.HEADER_SIZE, wal.PREFIX.size
        magic_expected, crc, parse = wal.MAGIC, crc32c.crc32c, pb.EventEnvelope.FromString
        offset = segment.offsets[position - segment.first]
        segment_last = segment.first + len(segment.offsets) - 1
        end = segment.offsets[stop + 1 - segment.first] if stop < segment_last else segment.end
        want = READ_CHUNK
        while position <= stop:
            requested = min(want, end - offset)
            data = os.pread(segment.fd, requested, offset)
            view = memoryview(data)
            length = len(data)
            cursor = 0
            while position <= stop and length - cursor >= header_size:
                magic, body_len, checksum, record_position, version, _, stream_len, _ = unpack(data, cursor)
                record_end = cursor + header_size + body_len
                if record_end > length:
                    break
                if (
                    magic != magic_expected
                    or record_position != position
                    or crc(view[cursor + crc_start : record_end]) != checksum
                ):
                    raise CorruptLogError(
                        segment.name, offset + cursor, position, "record damaged since the log was opened"
                    )
                body = cursor + header_size
                cursor = record_end
                position += 1
                if by_stream:
                    stream = data[body : body + stream_len].decode()
                    if streams and stream not in streams:
                        continue
                    if categories and stream.split("-", 1)[0] not in categories:
                        continue
                envelope = parse(data[body + stream_len : record_end])
                if types and envelope.event_type not in types:
                    continue
                envelope.stream_version = version
                envelope.global_position = record_position
                yield envelope
            if cursor == 0 and position <= stop:
                if length < header_size or length < requested:
                    raise CorruptLogError(segment.name, offset, position, "record missing from the file")
                want = header_size + wal.PREFIX.unpack_from(data, 0)[1]  # one record larger than a chunk
                if want > end - offset:  # it would run past the indexed data: never read it
                    raise CorruptLogError(
                        segment.name, offset, position, "record damaged since the log was opened"
                    )
            else:
                want = READ_CHUNK
            offset += cursor

    def read_envelope(self, position: int) -> pb.EventEnvelope:
        for envelope in self.matching(position, position, ALL_EVENTS):
            return envelope
        raise EventStoreError(f"position {position} is not in the log")


def _stamped(data: bytes, segment: Segment, position: int, stop: int) -> Iterator[list[bytes]]:
    """The envelopes of records position..stop of a segment whose bytes were checked as a whole, DECODE_CHUNK
    records at a time: their headers are held to the index (magic, positions, lengths) and each envelope
    comes with its stream_version and global_position already in its bytes (walbatch.stamped_bodies, one
    call a chunk), so that decoding them is one C-level map with no Python code per event. Each record's
    end is read from its own header: the segment's end may already include an append of this process's
    writer that the index does not hold."""
    offsets = segment.offsets  # sliced (copied) a chunk at a time: no buffer of it is held across a yield,
    # which would stop this process's writer from extending it
    for start in range(position, stop + 1, DECODE_CHUNK):
        end = min(start + DECODE_CHUNK - 1, stop)
        try:
            yield walbatch.stamped_bodies(
                data, offsets[start - segment.first : end + 1 - segment.first], start
            )
        except walbatch.BadIndex as exc:
            message, offset, index = exc.args
            raise CorruptLogError(segment.name, offset, start + index, message) from None


class FileSubscription(PollingSubscription):
    """Reads from the log, then waits for in-process or cross-process appends.

    `head_position()` is the store's (it catches up with other processes first).
    """

    def __init__(
        self,
        reader: Reader,
        waiters: HeadWaiters,
        head_position: Callable[[], int],
        from_position: int,
        event_filter: EventFilter,
        timeout: float | None,
    ):
        super().__init__(from_position, event_filter, timeout)
        self._reader = reader
        self._waiters = waiters
        self._head_position = head_position

    def _fetch(self, max_events: int) -> list[pb.EventEnvelope] | None:
        head = self._head_position()
        if head < self._next:
            return None
        found: list[pb.EventEnvelope] = []
        scanned = head
        for envelope in self._reader.matching(self._next, head, self._filter):
            found.append(envelope)
            if len(found) >= max_events:
                scanned = envelope.global_position
                break
        self._next = scanned + 1
        return found

    def _wait(self, remaining: float | None) -> None:
        self._waiters.wait_for(
            self._reader.log, self._next, CROSS_PROCESS_POLL_S if remaining is None else remaining
        )
