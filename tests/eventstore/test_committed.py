"""The log never loses its tail silently: whatever removes or replaces committed records, open (writer or
read-only), `esper verify` and `esper recover` refuse, naming the head the store recorded and the head the
segments hold, and nothing is truncated. Only records after every recorded commit may be cut as torn."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from eventstore import CommittedTailMissing, CorruptLogError
from eventstore.file import FileStore
from eventstore.verify import verify_file_log
from ops.cli import main
from tests.eventstore.conftest import make_event
from tests.eventstore.damage import as_if_crashed

SEGMENT_SIZE = 2048
BATCHES = 30  # of 3 events: 90 events over several segments


def build(path: Path, stream_prefix: str = "run") -> int:
    with FileStore(path, segment_size=SEGMENT_SIZE) as store:
        for batch in range(BATCHES):
            store.append([make_event(f"{stream_prefix}-{batch % 3}") for _ in range(3)])
        return store.head_position()


def segments(log: Path) -> list[Path]:
    return sorted(log.glob("*.wal"))


def delete_last(log: Path, other: Path) -> None:
    segments(log)[-1].unlink()


def delete_last_two(log: Path, other: Path) -> None:
    for path in segments(log)[-2:]:
        path.unlink()


def cut_last_batch(log: Path, other: Path) -> None:
    with FileStore(log, read_only=True) as store:
        offset = store._log.segments[-1].offsets[-3]
    with segments(log)[-1].open("r+b") as handle:
        handle.truncate(offset)


def cut_mid_record(log: Path, other: Path) -> None:
    last = segments(log)[-1]
    with last.open("r+b") as handle:
        handle.truncate(last.stat().st_size - 7)


def flip_a_bit_in_the_last_record(log: Path, other: Path) -> None:
    last = segments(log)[-1]
    data = bytearray(last.read_bytes())
    data[-3] ^= 0x10
    last.write_bytes(bytes(data))


def replace_with_another_logs_records(log: Path, other: Path) -> None:
    """CRC-valid records of another log (its first segment) in place of the last segment."""
    build(other, "other")
    shutil.copyfile(segments(other)[0], segments(log)[-1])


DAMAGE: list[Callable[[Path, Path], None]] = [
    delete_last,
    delete_last_two,
    cut_last_batch,
    cut_mid_record,
    flip_a_bit_in_the_last_record,
    replace_with_another_logs_records,
]


def files(log: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(log.iterdir()) if path.is_file()}


# Killed: no INDEX since the last acknowledged append, HEAD's durable head is the only record of the commits.
CASES = [(damage, closed) for closed in ("closed-cleanly", "killed-after-acks") for damage in DAMAGE]


@pytest.mark.parametrize(
    ("damage", "closed"), CASES, ids=[f"{damage.__name__}-{closed}" for damage, closed in CASES]
)
def test_losing_committed_records_is_refused_never_truncated(
    tmp_path: Path, damage: Callable[[Path, Path], None], closed: str
) -> None:
    log = tmp_path / "log"
    head = build(log)
    if closed == "killed-after-acks":
        as_if_crashed(log, head)
    damage(log, tmp_path / "other")
    before = files(log)
    for read_only in (False, True):
        with pytest.raises(CorruptLogError) as raised:
            FileStore(log, read_only=read_only)
        if isinstance(raised.value, CommittedTailMissing):
            assert raised.value.expected_head == head and raised.value.found_head < head
            assert f"committed head {head}" in str(raised.value)
            assert f"up to head {raised.value.found_head}" in str(raised.value)
    report = verify_file_log(log)
    assert report.problem is not None and not report.problem.torn_tail
    assert files(log) == before, "a refused open must not modify the log"


def test_cli_names_the_expected_and_found_head(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    log = tmp_path / "data" / "log"
    build(log)
    segments(log)[-1].unlink()
    before = files(log)
    assert main(["verify", "--data-dir", str(tmp_path / "data"), "--json"]) == 1
    problem = json.loads(capsys.readouterr().out)["problem"]
    assert not problem["torn_tail"] and "committed head 90" in problem["reason"]
    for command in ("recover", "replay"):
        assert main([command, "--data-dir", str(tmp_path / "data")]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "committed head 90" in err and "up to head" in err
    assert files(log) == before


def test_a_torn_write_after_every_recorded_commit_is_still_truncated(tmp_path: Path) -> None:
    log = tmp_path / "log"
    head = build(log)
    as_if_crashed(log, head - 3)  # the last batch was being written when the writer died
    cut_mid_record(log, tmp_path)
    assert verify_file_log(log).problem is not None and verify_file_log(log).problem.torn_tail  # type: ignore[union-attr]
    with FileStore(log, segment_size=SEGMENT_SIZE) as store:
        assert store.head_position() == head - 3 and store.recovery.truncated_bytes > 0
    assert verify_file_log(log).ok


def test_interval_fsync_records_only_what_it_synced(tmp_path: Path) -> None:
    """With fsync interval:<ms>, HEAD's durable head follows the fdatasyncs, not the acknowledgements."""
    log = tmp_path / "log"
    with FileStore(log, fsync="interval:60000") as store:
        store.append([make_event("run-a")])
        assert store._head.durable() is None
    with FileStore(log, read_only=True) as reader:
        assert reader.recovery.committed_head == 1
