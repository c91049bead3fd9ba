"""Reads of the file store: framing, CRC check, filtering and decoding in one loop, and subscriptions.

Reads see what `LogIndex` has indexed; the store façade first catches up with other processes' appends
when the HEAD hint moved. Every record read has its CRC32C checked again: damage since the log was opened
raises CorruptLogError, it is never returned.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from itertools import islice

import crc32c

from eventstore import wal
from eventstore.api import ALL_EVENTS, CorruptLogError, EventFilter, EventStoreError
from eventstore.file.head import CROSS_PROCESS_POLL_S, HeadWaiters
from eventstore.file.segments import LogIndex
from eventstore.subscription import PollingSubscription
from leyline import pb

READ_CHUNK = 1 << 20


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
        """The events first..last that match, each record's CRC32C checked.

        One loop does framing, filtering and decoding: this is the replay hot path.
        """
        streams, categories, types = event_filter.streams, event_filter.categories, event_filter.event_types
        by_stream = bool(streams or categories)
        unpack, header_size, crc_start = wal.HEADER.unpack_from, wal.HEADER_SIZE, wal.PREFIX.size
        magic_expected, crc, parse = wal.MAGIC, crc32c.crc32c, pb.EventEnvelope.FromString
        segment_of = self.log.segment_of
        position = first
        while position <= last:
            segment = segment_of(position)
            offset = segment.offsets[position - segment.first]
            segment_last = segment.first + len(segment.offsets) - 1
            stop = min(last, segment_last)
            end = segment.offsets[stop + 1 - segment.first] if stop < segment_last else segment.end
            want = READ_CHUNK
            while position <= stop:
                requested = min(want, end - offset)
                data = os.pread(segment.fd, requested, offset)
                view = memoryview(data)
                length = len(data)
                cursor = 0
                while position <= stop and length - cursor >= header_size:
                    magic, body_len, checksum, record_position, version, _, stream_len, _ = unpack(
                        data, cursor
                    )
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
