"""Damaged logs: verify names the exact record; open truncates only a torn tail, never skips damage."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventstore import CorruptLogError
from eventstore.file import FileStore
from eventstore.verify import verify_file_log
from eventstore.wal import HEADER_SIZE
from tests.eventstore.conftest import make_event
from tests.eventstore.damage import as_if_crashed


def build_log(path: Path, batches: int = 10, segment_size: int = 64 << 20) -> list[int]:
    """A log of `batches` batches of 3 events; returns the byte offset of every record in segment 1."""
    with FileStore(path, segment_size=segment_size) as store:
        for batch in range(batches):
            store.append([make_event(f"run-{batch % 3}", note=f"{batch}.{i}") for i in range(3)])
        segment = store._log.segments[0]
        return list(segment.offsets)


def segment(path: Path, first: int = 1) -> Path:
    return path / f"{first:020d}.wal"


def test_flipped_byte_mid_segment_is_named_and_refused(tmp_path: Path) -> None:
    log = tmp_path / "log"
    offsets = build_log(log)
    assert (log / "INDEX").exists(), "the checkpoint must not hide damage: its segment CRC no longer matches"
    victim = 14  # position 15, mid-segment, mid-batch
    data = bytearray(segment(log).read_bytes())
    data[offsets[victim] + HEADER_SIZE + 5] ^= 0x40
    segment(log).write_bytes(bytes(data))
    report = verify_file_log(log)
    assert report.problem is not None
    assert (report.problem.segment, report.problem.offset, report.problem.position) == (
        segment(log).name,
        offsets[victim],
        victim + 1,
    )
    assert not report.problem.torn_tail
    assert "CRC32C" in report.problem.reason
    assert report.records == 12  # the batches before the damaged one
    with pytest.raises(CorruptLogError) as raised:
        FileStore(log)
    assert (raised.value.segment, raised.value.offset, raised.value.position) == (
        segment(log).name,
        offsets[victim],
        victim + 1,
    )
    assert segment(log).read_bytes() == bytes(data), "a refused open must not modify the log"


def test_flipped_byte_in_a_header_position(tmp_path: Path) -> None:
    log = tmp_path / "log"
    offsets = build_log(log)
    data = bytearray(segment(log).read_bytes())
    data[offsets[3] + 12] ^= 0x01  # the position field: caught by the CRC
    segment(log).write_bytes(bytes(data))
    report = verify_file_log(log)
    assert report.problem is not None and report.problem.position == 4 and report.problem.offset == offsets[3]


def test_truncated_middle_is_corruption(tmp_path: Path) -> None:
    log = tmp_path / "log"
    offsets = build_log(log)
    data = segment(log).read_bytes()
    cut = data[: offsets[10] + 7] + data[offsets[13] :]  # part of position 11 and all of 12, 13 vanish
    segment(log).write_bytes(cut)
    report = verify_file_log(log)
    assert report.problem is not None
    assert (report.problem.offset, report.problem.position) == (offsets[10], 11)
    assert not report.problem.torn_tail
    with pytest.raises(CorruptLogError) as raised:
        FileStore(log)
    assert raised.value.position == 11 and raised.value.offset == offsets[10]


def test_records_removed_on_a_boundary_leave_a_position_hole(tmp_path: Path) -> None:
    log = tmp_path / "log"
    offsets = build_log(log)
    data = segment(log).read_bytes()
    segment(log).write_bytes(data[: offsets[6]] + data[offsets[9] :])  # batch 3 (positions 7-9) removed
    report = verify_file_log(log)
    assert report.problem is not None
    assert (report.problem.offset, report.problem.position) == (offsets[6], 7)
    assert "position 10, expected 7" in report.problem.reason
    with pytest.raises(CorruptLogError):
        FileStore(log)


def test_garbage_at_the_tail_is_truncated_and_reported(tmp_path: Path) -> None:
    log = tmp_path / "log"
    build_log(log)
    size = segment(log).stat().st_size
    with segment(log).open("ab") as handle:
        handle.write(b"\x00garbage that is not a record" * 3)
    report = verify_file_log(log)
    assert report.problem is not None and report.problem.torn_tail
    assert (report.problem.offset, report.problem.position) == (size, 31)
    store = FileStore(log)
    assert store.recovery.truncated_bytes == 87
    assert store.recovery.truncated_offset == size
    assert store.head_position() == 30
    assert store.append([make_event("run-x")]) == [31]
    store.close()
    assert verify_file_log(log).ok


def test_torn_batch_is_removed_entirely(tmp_path: Path) -> None:
    log = tmp_path / "log"
    offsets = build_log(log)
    data = segment(log).read_bytes()
    segment(log).write_bytes(data[: offsets[28] + 10])  # the last batch loses its last record and a half
    as_if_crashed(log, 27)  # the last batch was being written: never acknowledged
    with FileStore(log) as store:
        assert store.head_position() == 27
        assert store.recovery.truncated_offset == offsets[27]
        assert [e.global_position for e in store.read_stream("run-0")][-1] <= 27
    assert segment(log).stat().st_size == offsets[27]


def test_batch_torn_on_a_record_boundary_is_a_torn_tail(tmp_path: Path) -> None:
    log = tmp_path / "log"
    offsets = build_log(log)
    data = segment(log).read_bytes()
    segment(log).write_bytes(data[: offsets[29]])  # positions 28 and 29 whole, 30 (the commit record) gone
    as_if_crashed(log, 27)
    report = verify_file_log(log)
    assert report.problem is not None and report.problem.torn_tail
    assert (report.problem.offset, report.problem.position) == (offsets[27], 28)
    with FileStore(log) as store:
        assert store.head_position() == 27
        assert store.recovery.truncated_bytes == offsets[29] - offsets[27]
    assert verify_file_log(log).ok


def test_damage_to_a_segment_before_the_last_is_never_a_torn_tail(tmp_path: Path) -> None:
    log = tmp_path / "log"
    build_log(log, batches=30, segment_size=2048)
    names = sorted(p.name for p in log.glob("*.wal"))
    assert len(names) > 2
    first = log / names[0]
    first.write_bytes(first.read_bytes()[:-5])
    report = verify_file_log(log)
    assert report.problem is not None and not report.problem.torn_tail
    assert report.problem.segment == names[0]
    with pytest.raises(CorruptLogError) as raised:
        FileStore(log)
    assert raised.value.segment == names[0]


def test_missing_segment_is_named(tmp_path: Path) -> None:
    log = tmp_path / "log"
    build_log(log, batches=30, segment_size=2048)
    names = sorted(p.name for p in log.glob("*.wal"))
    (log / names[1]).unlink()
    report = verify_file_log(log)
    assert report.problem is not None and report.problem.segment == names[2]
    with pytest.raises(CorruptLogError) as raised:
        FileStore(log)
    assert raised.value.segment == names[2]


def test_corrupt_snapshot_is_ignored(tmp_path: Path) -> None:
    from eventstore import Snapshot

    with FileStore(tmp_path / "log") as store:
        store.append([make_event("run-a")])
        store.save_snapshot(Snapshot("run-a", 1, 1, b"state"))
        (path,) = (tmp_path / "log" / "snapshots").iterdir()
        data = bytearray(path.read_bytes())
        data[-1] ^= 0xFF
        path.write_bytes(bytes(data))
        assert store.load_snapshot("run-a", 1) is None
        assert not path.exists()
