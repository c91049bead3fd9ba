"""Reads that cover most of a segment check it with one CRC32C and decode in bulk (eventstore.file.reads):
they return what record-by-record reads return, and damage since the log was opened is still refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from eventstore import CorruptLogError, EventFilter
from eventstore.file import FileStore
from eventstore.file.reads import BULK_MIN, Reader
from eventstore.file.segments import Segment
from eventstore.wal import HEADER_SIZE
from tests.eventstore.conftest import make_event

EVENTS = 10_000  # appended in batches of 500: two segments of more than BULK_MIN records, a shorter one

# A filtered read decodes record by record: the reference the bulk path is held to.
RECORD_BY_RECORD = EventFilter(event_types=frozenset({"RunStarted"}))


def fill(path: Path, segment_size: int = 650_000) -> FileStore:
    store = FileStore(path, segment_size=segment_size)
    for start in range(0, EVENTS, 500):
        store.append([make_event(f"run-{n % 7}", note=str(n)) for n in range(start, start + 500)])
    return store


def test_bulk_reads_return_what_record_by_record_reads_return(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []
    whole_segment = Reader._whole_segment

    def spy(reader: Reader, segment: Segment) -> bytes | None:
        checked.append(segment.name)
        return whole_segment(reader, segment)

    monkeypatch.setattr(Reader, "_whole_segment", spy)
    with fill(tmp_path / "log") as store:
        segments = [segment.name for segment in store._log.segments if len(segment.offsets) > BULK_MIN]
        assert len(segments) > 1, "the log must span segments to cover their boundaries"
        one_by_one = list(store.read_all(event_filter=RECORD_BY_RECORD))
        assert len(one_by_one) == EVENTS
        assert len(list(store.read_all(limit=1000))) == len(store.subscribe().poll(max_events=1000)) == 1000
        assert checked == [], "a page of a long read, a subscription's poll, reads no whole segment"
        assert list(store.read_all()) == one_by_one
        assert checked == segments, "a full replay reads every segment of more than BULK_MIN records in bulk"
        assert [e.global_position for e in store.read_all()] == list(range(1, EVENTS + 1))
        middle = BULK_MIN // 3
        assert list(store.read_all(from_position=middle)) == one_by_one[middle - 1 :]
        assert list(store.read_all(to_position=EVENTS - 7)) == one_by_one[: EVENTS - 7]


def test_damage_since_open_is_refused_by_a_bulk_read(tmp_path: Path) -> None:
    with fill(tmp_path / "log", segment_size=64 << 20) as store:
        segment = store._log.segments[0]
        victim = BULK_MIN + 1000  # past the records a long read takes one by one
        offset = segment.offsets[victim - 1] + HEADER_SIZE + 12
        fd = os.open(tmp_path / "log" / segment.name, os.O_RDWR)
        try:
            byte = os.pread(fd, 1, offset)
            os.pwrite(fd, bytes([byte[0] ^ 0x40]), offset)
        finally:
            os.close(fd)
        with pytest.raises(CorruptLogError, match="damaged since the log was opened") as raised:
            list(store.read_all())
        assert raised.value.position == victim


def test_a_bulk_read_ignores_bytes_written_past_the_index(tmp_path: Path) -> None:
    """The writer extends a segment's end and CRC before it indexes the records (once durable): a bulk
    read in between sees more bytes than the index holds and must return the indexed records only."""
    with fill(tmp_path / "log", segment_size=64 << 20) as store:
        expected = list(store.read_all(event_filter=RECORD_BY_RECORD))
        segment = store._log.segments[-1]
        last = segment.offsets[-1]
        unindexed = os.pread(segment.fd, segment.end - last, last)  # a copy of the last frame
        store._writer.io.write(segment, [unindexed], {})
        assert list(store.read_all()) == expected
