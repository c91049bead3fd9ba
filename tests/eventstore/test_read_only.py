"""Read-only commands never write: a read-only open creates, truncates and rewrites nothing, whatever
state the log is in; only a writer or `esper recover` repairs, and says what it did."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from eventstore import EventStoreError, Snapshot, StoreUnavailable
from eventstore.api import CorruptLogError
from eventstore.file import FileStore
from ops.cli import main
from tests.eventstore.conftest import make_event
from tests.eventstore.damage import DAMAGE, as_if_crashed, damage


def build(log: Path, batches: int = 6) -> int:
    with FileStore(log, segment_size=1024) as store:
        for batch in range(batches):
            store.append([make_event(f"run-{batch % 2}"), make_event("seed-x.0")])
        store.save_snapshot(Snapshot("run-0", 2, 1, b"state"))
        return store.head_position()


def tree(log: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(log)): path.read_bytes() for path in sorted(log.rglob("*")) if path.is_file()
    }


def tear(log: Path, head: int, keep: int) -> None:
    """A crash in the middle of appending the batch after `head`: `keep` bytes of it reached the disk."""
    with FileStore(log, segment_size=1024) as store:
        store.append([make_event("run-0"), make_event("run-1")])
    last = sorted(log.glob("*.wal"))[-1]
    with FileStore(log, read_only=True) as reader:
        start = reader._log.segments[-1].offsets[-2]
    with last.open("r+b") as handle:
        handle.truncate(start + keep)
    as_if_crashed(log, head)


def test_a_read_only_open_leaves_a_torn_tail_in_place_and_says_so(tmp_path: Path) -> None:
    log = tmp_path / "log"
    head = build(log)
    tear(log, head, 30)
    before = tree(log)
    with FileStore(log, read_only=True) as store:
        assert store.head_position() == head
        assert len(list(store.read_all())) == head
        assert store.recovery.torn_bytes == 30 and store.recovery.truncated_bytes == 0
        assert "left in place" in store.recovery.describe()
        with pytest.raises(EventStoreError, match="read-only"):
            store.append([make_event("run-0")])
        with pytest.raises(EventStoreError, match="read-only"):
            store.save_snapshot(Snapshot("run-0", 1, 1, b""))
        assert store.load_snapshot("run-0", schema_version=2) is None  # another schema: kept, not deleted
    assert tree(log) == before
    with FileStore(log) as writer:
        assert writer.recovery.truncated_bytes == 30 and writer.head_position() == head


def test_a_read_only_open_creates_nothing(tmp_path: Path) -> None:
    log = tmp_path / "log"
    build(log)
    for name in ("LOCK", "HEAD", "INDEX"):
        (log / name).unlink()
    before = tree(log)
    with FileStore(log, read_only=True) as store:
        assert store.head_position() == 12
    assert tree(log) == before
    with pytest.raises(StoreUnavailable):
        FileStore(tmp_path / "absent", read_only=True)
    assert not (tmp_path / "absent").exists()


def test_a_reader_sees_a_writers_later_appends(tmp_path: Path) -> None:
    log = tmp_path / "log"
    head = build(log)
    with FileStore(log, read_only=True) as reader, FileStore(log) as writer:
        writer.append([make_event("run-9")])
        assert reader.head_position() == head + 1
        assert [e.stream for e in reader.read_all(head + 1)] == ["run-9"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=DAMAGE)
def test_whatever_the_damage_a_read_only_open_changes_no_file(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, str, float]]
) -> None:
    log = tmp_path_factory.mktemp("ro") / "log"
    build(log)
    damage(log, steps)
    before = tree(log)
    try:
        with FileStore(log, read_only=True) as store:
            list(store.read_all())
            store.load_snapshot("run-0", schema_version=1)
    except (CorruptLogError, StoreUnavailable):
        pass
    assert tree(log) == before


def test_replay_and_verify_never_repair(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    log = tmp_path / "data" / "log"
    head = build(log)
    tear(log, head, 50)
    before = tree(log)
    assert main(["replay", "--data-dir", str(tmp_path / "data"), "--to", "1"]) == 0
    captured = capsys.readouterr()
    assert [json.loads(line)["position"] for line in captured.out.splitlines()] == [1]
    assert "torn tail" in captured.err and "esper recover" in captured.err
    assert main(["verify", "--data-dir", str(tmp_path / "data")]) == 1
    assert "torn tail" in capsys.readouterr().out
    assert tree(log) == before
    assert main(["recover", "--data-dir", str(tmp_path / "data"), "--json"]) == 0
    (step, *_) = json.loads(capsys.readouterr().out)["steps"]
    assert step["truncated_bytes"] == 50 and "truncated a torn tail of 50 bytes" in step["did"]
