"""Segments extended ahead with zeros: the file size is not the end of the data. Recovery, catch-up across
stores and verify find the end from the records and the committed heads; the tail-loss checks hold."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore import CommittedTailMissing, CorruptLogError, wal
from eventstore.file import FileStore
from eventstore.verify import verify_file_log
from tests.eventstore.conftest import make_event
from tests.eventstore.damage import as_if_crashed

SEGMENT = wal.segment_name(1)
PAGE = wal.PAGE


def crashed_copy(tmp_path: Path, events: int) -> tuple[Path, int]:
    """A log as a writer killed after acknowledging `events` single appends leaves it (never closed: the
    zeros extended ahead are still there), and where its data ends."""
    live = FileStore(tmp_path / "live")
    for index in range(events):
        live.append([make_event(f"run-{index % 3}")])
    data_end = live._log.segments[-1].end
    copy = tmp_path / "crashed"
    shutil.copytree(tmp_path / "live", copy)
    live.close()
    as_if_crashed(copy, events)
    assert (copy / SEGMENT).stat().st_size > data_end  # the zeros ahead survived the "crash"
    return copy, data_end


def test_a_closed_segment_ends_at_its_data(tmp_path: Path) -> None:
    log = tmp_path / "log"
    with FileStore(log) as store:
        store.append([make_event("run-1")])
        size_open = (log / SEGMENT).stat().st_size
        end = store._log.segments[-1].end
    assert size_open > end
    assert (log / SEGMENT).stat().st_size == end


def test_reopen_after_a_crash_finds_the_end_from_the_records(tmp_path: Path) -> None:
    copy, _ = crashed_copy(tmp_path, 20)
    report = verify_file_log(copy)
    assert report.ok and report.head == 20
    with FileStore(copy) as store:
        assert store.recovery.truncated_bytes == 0 and store.recovery.torn_bytes == 0
        assert store.head_position() == 20
        assert store.append([make_event("run-9")]) == [21]
    assert verify_file_log(copy).head == 21


def test_a_torn_record_in_the_zeros_is_cut_and_nothing_committed_is(tmp_path: Path) -> None:
    copy, data_end = crashed_copy(tmp_path, 5)
    with open(copy / SEGMENT, "r+b") as segment:
        segment.seek(data_end)
        segment.write(wal.MAGIC + b"\x40\x00\x00\x00half a record")
    problem = verify_file_log(copy).problem
    assert problem is not None and problem.torn_tail and problem.offset == data_end
    with FileStore(copy) as store:
        assert store.recovery.truncated_offset == data_end
        assert store.head_position() == 5
    assert verify_file_log(copy).ok


@pytest.mark.parametrize("cut", ["zeroed", "truncated"])
def test_committed_records_lost_in_the_zeros_are_refused(tmp_path: Path, cut: str) -> None:
    copy, data_end = crashed_copy(tmp_path, 6)
    last_record = data_end - (data_end // 6)  # somewhere inside the committed data
    with open(copy / SEGMENT, "r+b") as segment:
        if cut == "zeroed":
            segment.seek(last_record)
            segment.write(bytes(data_end - last_record))
        else:
            segment.truncate(last_record)
    assert not verify_file_log(copy).ok
    with pytest.raises(CommittedTailMissing):
        FileStore(copy)
    with pytest.raises(CommittedTailMissing):
        FileStore(copy, read_only=True)


def test_a_record_after_zeros_is_damage_not_a_clean_end(tmp_path: Path) -> None:
    copy, _ = crashed_copy(tmp_path, 6)
    data = (copy / SEGMENT).read_bytes()
    frames = list(wal.Scan(data, 0, 1))
    third = frames[2]
    with open(copy / SEGMENT, "r+b") as segment:
        segment.seek(third.offset)
        segment.write(bytes(third.end - third.offset))  # records 4..6 follow a zeroed record 3
    assert not verify_file_log(copy).ok
    with pytest.raises(CorruptLogError):
        FileStore(copy)


def test_stores_catch_up_on_each_others_appends_into_the_zeros(tmp_path: Path) -> None:
    log = tmp_path / "log"
    first, second = FileStore(log), FileStore(log)
    try:
        for round_ in range(5):
            assert first.append([make_event("run-a")]) == [2 * round_ + 1]
            assert second.append([make_event("run-b")]) == [2 * round_ + 2]  # written into first's zeros
            assert first.head_position() == second.head_position() == 2 * round_ + 2
            assert first.stream_version("run-b") == round_ + 1
        assert [e.stream for e in first.read_all()] == ["run-a", "run-b"] * 5
        first.close()  # another store appended since: the tail is left as it is
        assert second.append([make_event("run-b")]) == [11]
    finally:
        first.close()
        second.close()
    with FileStore(log) as reopened:
        assert reopened.recovery.truncated_bytes == 0 and reopened.head_position() == 11
    assert verify_file_log(log).ok


def test_rolling_to_a_new_segment_cuts_the_old_one_back(tmp_path: Path) -> None:
    log = tmp_path / "log"
    with FileStore(log, segment_size=4096) as store:
        for _ in range(40):
            store.append([make_event("run-1", "x" * 200)])
        segments = store._log.segments
        assert len(segments) > 2
        for segment in segments[:-1]:
            assert (log / segment.name).stat().st_size == segment.end
    assert verify_file_log(log).ok


def torn_batch_copy(tmp_path: Path, lost: str) -> tuple[Path, int]:
    """A log whose writer was killed during the fdatasync of a 40-event batch written into the zeros
    (three single appends acknowledged before it), where the disk got some of the batch's pages and not
    others: `lost` "first" (the page the batch starts in still holds only what it held before: the
    committed records, then zeros) or "middle" (a whole page inside the batch is still zeros). Returns
    the copy and where the acknowledged data ends."""
    live = FileStore(tmp_path / "live")
    for _ in range(3):
        live.append([make_event("run-1")])
    data_end = live._log.segments[-1].end
    live.append([make_event(f"run-{index % 3}", "x" * 300) for index in range(40)])
    batch_end = live._log.segments[-1].end
    copy = tmp_path / "crashed"
    shutil.copytree(tmp_path / "live", copy)
    live.close()
    as_if_crashed(copy, 3)
    data = bytearray((copy / SEGMENT).read_bytes())
    if lost == "first":
        data[data_end:PAGE] = bytes(PAGE - data_end)
    else:
        data[2 * PAGE : 3 * PAGE] = bytes(PAGE)
    assert data_end < PAGE and batch_end > 3 * PAGE  # the batch runs from the first page past the third
    (copy / SEGMENT).write_bytes(bytes(data))
    return copy, data_end


@pytest.mark.parametrize("lost", ["first", "middle"])
def test_a_batch_torn_page_by_page_in_the_zeros_is_a_torn_tail(tmp_path: Path, lost: str) -> None:
    copy, data_end = torn_batch_copy(tmp_path, lost)
    problem = verify_file_log(copy).problem
    assert problem is not None and problem.torn_tail
    with FileStore(copy) as store:
        assert store.recovery.truncated_offset == data_end
        assert store.head_position() == 3
        assert store.append([make_event("run-9")]) == [4]
    assert verify_file_log(copy).ok


def test_a_committed_batch_with_a_page_of_zeros_is_refused(tmp_path: Path) -> None:
    copy, _ = torn_batch_copy(tmp_path, "middle")
    as_if_crashed(copy, 43)  # the batch was acknowledged: its page of zeros is damage, not a torn write
    assert not verify_file_log(copy).ok
    with pytest.raises(CommittedTailMissing):
        FileStore(copy)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    acknowledged=st.integers(1, 6),
    batch=st.integers(2, 60),
    note=st.integers(0, 600),
    lost_pages=st.sets(st.integers(0, 15)),
)
def test_a_batch_torn_in_any_of_its_pages_recovers_to_what_was_acknowledged(
    tmp_path_factory: pytest.TempPathFactory, acknowledged: int, batch: int, note: int, lost_pages: set[int]
) -> None:
    """Whichever pages of an unacknowledged batch written into the zeros reached the disk before the
    crash, open and verify agree: the batch is whole and kept, absent (the log ends cleanly), or a torn
    tail cut back to exactly the acknowledged events, which read back intact, and the store appends after
    them."""
    root = tmp_path_factory.mktemp("torn")
    live = FileStore(root / "live")
    for index in range(acknowledged):
        live.append([make_event(f"run-{index % 3}")])
    acknowledged_ids = [envelope.event_id for envelope in live.read_all()]
    data_end = live._log.segments[-1].end
    before = (root / "live" / SEGMENT).read_bytes()
    live.append([make_event(f"run-{index % 4}", "y" * note) for index in range(batch)])
    batch_end = live._log.segments[-1].end
    copy = root / "crashed"
    shutil.copytree(root / "live", copy)
    live.close()
    as_if_crashed(copy, acknowledged)

    data = bytearray((copy / SEGMENT).read_bytes())
    written = bytes(data)
    first_page, last_page = data_end // PAGE, (batch_end - 1) // PAGE
    for page in {first_page + offset for offset in lost_pages if first_page + offset <= last_page}:
        start, end = max(page * PAGE, data_end), min((page + 1) * PAGE, batch_end)
        data[start:end] = before[start:end].ljust(end - start, b"\0")  # as the page was before the batch
    (copy / SEGMENT).write_bytes(bytes(data))
    whole = bytes(data) == written
    vanished = not any(data[data_end:batch_end])  # no byte of the batch reached the disk: a clean end

    report = verify_file_log(copy)
    if whole or vanished:
        assert report.ok
    else:
        assert report.problem is not None and report.problem.torn_tail
    expected_head = acknowledged + batch if whole else acknowledged
    with FileStore(copy) as store:
        assert store.head_position() == expected_head
        assert [envelope.event_id for envelope in store.read_all()][:acknowledged] == acknowledged_ids
        assert store.append([make_event("run-9")]) == [expected_head + 1]
    assert verify_file_log(copy).ok
