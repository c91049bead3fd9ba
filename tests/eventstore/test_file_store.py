"""File-store specifics: fsync policies, non-blocking submit, group commit, segments, processes, indexes."""

from __future__ import annotations

import struct
import subprocess
import sys
import threading
from array import array
from pathlib import Path

import pytest

from eventstore import NO_STREAM, StoreUnavailable, WrongExpectedVersion, open_store, wal
from eventstore import idindex as idindex_module
from eventstore.file import FileStore, FsyncPolicy
from eventstore.file.head import DURABLE_CHECK
from eventstore.idindex import IdIndex
from eventstore.verify import verify_file_log
from leyline import decode_payload, pb
from tests.eventstore.conftest import make_event

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("policy", ["always", "batch", "interval:5"])
def test_every_fsync_policy_stores_and_reopens(tmp_path: Path, policy: str) -> None:
    with FileStore(tmp_path / "log", fsync=policy) as store:
        for index in range(20):
            store.append([make_event("run-a", note=str(index))])
        futures = [store.submit([make_event("run-b")]) for _ in range(10)]
        assert sorted(f.result(timeout=30)[0] for f in futures) == list(range(21, 31))
    with FileStore(tmp_path / "log") as store:
        assert store.head_position() == 30
        assert store.stream_version("run-b") == 10


def test_fsync_policy_parsing() -> None:
    assert FsyncPolicy.parse("interval:250") == FsyncPolicy("interval", 0.25)
    assert str(FsyncPolicy.parse("interval:250")) == "interval:250"
    for bad in ("sometimes", "interval:", "interval:-3", "interval:x"):
        with pytest.raises(ValueError, match="fsync policy"):
            FsyncPolicy.parse(bad)


def test_submit_resolves_with_positions_or_the_conflict(tmp_path: Path) -> None:
    with FileStore(tmp_path / "log") as store:
        first = store.submit([make_event("run-a")], {"run-a": NO_STREAM})
        second = store.submit([make_event("run-a")], {"run-a": NO_STREAM})
        assert first.result(timeout=30) == [1]
        with pytest.raises(WrongExpectedVersion) as raised:
            second.result(timeout=30)
        assert raised.value.actual == 1


def test_threads_share_fsyncs_and_positions_stay_gap_free(tmp_path: Path) -> None:
    results: list[list[int]] = []
    with FileStore(tmp_path / "log") as store:

        def worker(name: str) -> None:
            for index in range(40):
                results.append(store.append([make_event(f"run-{name}", note=str(index)) for _ in range(2)]))

        threads = [threading.Thread(target=worker, args=(str(n),)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        positions = sorted(p for batch in results for p in batch)
        assert positions == list(range(1, 321))
        assert all(batch[1] == batch[0] + 1 for batch in results), "a batch is contiguous"
        for name in range(4):
            versions = [e.stream_version for e in store.read_stream(f"run-{name}")]
            assert versions == list(range(1, 81))


def test_segments_roll_and_reads_cross_them(tmp_path: Path) -> None:
    log = tmp_path / "log"
    with FileStore(log, segment_size=1024) as store:
        for index in range(60):
            store.append([make_event(f"run-{index % 4}", note=str(index)), make_event("seed-r.1")])
        names = sorted(p.name for p in log.glob("*.wal"))
        assert len(names) > 5
        firsts = [wal.segment_first_position(name) or 0 for name in names]
        assert firsts[0] == 1 and firsts == sorted(firsts)
        assert [e.global_position for e in store.read_all(from_position=37, limit=50)] == list(range(37, 87))
        assert len(store.read_stream("seed-r.1")) == 60
    with FileStore(log, segment_size=1024) as store:
        assert store.head_position() == 120
        assert [decode_payload(e).run_id for e in store.read_stream("run-3")] == [  # type: ignore[attr-defined]
            str(i) for i in range(3, 60, 4)
        ]
    assert verify_file_log(log).segments == len(names)


def test_preallocation_keeps_the_data_end(tmp_path: Path) -> None:
    with FileStore(tmp_path / "log", preallocate=True, segment_size=1 << 20) as store:
        store.append([make_event("run-a")])
    with FileStore(tmp_path / "log") as store:
        assert store.head_position() == 1
    assert verify_file_log(tmp_path / "log").ok


def test_where_there_is_no_store(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="does not exist"):
        open_store(tmp_path / "absent", create=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("hello")
    with pytest.raises(StoreUnavailable, match="not an esper event store"):
        open_store(tmp_path / "other")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreUnavailable, match="not a directory"):
        open_store(tmp_path / "file")
    (tmp_path / "wrong").mkdir()
    (tmp_path / "wrong" / "STORE").write_text('{"format": "esper-wal", "version": 99}')
    with pytest.raises(StoreUnavailable, match="version 99"):
        open_store(tmp_path / "wrong")


def test_closed_store_refuses_appends(tmp_path: Path) -> None:
    from eventstore import EventStoreError

    store = FileStore(tmp_path / "log")
    store.close()
    store.close()
    with pytest.raises(EventStoreError, match="closed"):
        store.append([make_event("run-a")])


def spawn_writer(location: Path, name: str, batches: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.eventstore.writer_child",
            str(location),
            name,
            str(batches),
            "segment_size=4096",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_processes_append_concurrently_and_readers_see_them(tmp_path: Path) -> None:
    log = tmp_path / "log"
    reader = FileStore(log, segment_size=4096)
    subscription = reader.subscribe(timeout=30)
    writers = [spawn_writer(log, f"p{n}", 40) for n in range(3)]
    seen = []
    acked = 0
    for writer in writers:
        stdout, _ = writer.communicate(timeout=300)
        assert writer.returncode == 0
        acked += stdout.count("ack")
    assert acked == 120
    while True:
        batch = subscription.poll(timeout=0)
        if not batch:
            break
        seen.extend(batch)
    assert [e.global_position for e in seen] == list(range(1, len(seen) + 1))
    assert reader.head_position() == len(seen)
    batches: dict[tuple[str, str], int] = {}
    for envelope in seen:
        name, batch, _, size = decode_payload(envelope).run_id.split("/")  # type: ignore[attr-defined]
        batches[(name, batch)] = batches.get((name, batch), 0) + 1
        assert batches[(name, batch)] <= int(size)
    assert len(batches) == 120
    reader.close()
    assert verify_file_log(log).ok


def test_an_appender_repairs_a_batch_that_a_dead_writer_left_half_written(tmp_path: Path) -> None:
    first = make_event("s-1", "first")
    batch = [make_event("s-2", "x" * 100 + str(n)) for n in range(4)]
    with FileStore(tmp_path / "scratch", preallocate=False) as scratch:  # file size = end of data
        scratch.append([first])
        segment_file = tmp_path / "scratch" / wal.segment_name(1)
        committed = segment_file.stat().st_size
        scratch.append(batch)
    data = segment_file.read_bytes()[committed:]
    torn = data[: list(wal.Scan(data, 0, 2))[-1].offset]  # three of the batch's four records, no commit
    log = tmp_path / "log"
    store = FileStore(log)  # extends the segment with zeros ahead of its data
    store.append([first])
    with open(log / wal.segment_name(1), "r+b") as segment:
        segment.seek(committed)
        segment.write(torn)  # where the dead writer wrote: into the zeros after the data
    size = (log / wal.segment_name(1)).stat().st_size
    assert size > committed + len(torn)
    (log / "HEAD").write_bytes(struct.pack("<QQ", 1, 1))  # head 1, writing flag still raised
    late = make_event("s-3", "late")
    assert store.append([late]) == [2]
    assert store.recovery.truncated_bytes == size - committed
    assert [e.event_id for e in store.read_all()] == [first.event_id, late.event_id]
    store.close()
    with FileStore(log) as reopened:
        assert reopened.recovery.truncated_bytes == 0
        assert [e.event_id for e in reopened.read_all()] == [first.event_id, late.event_id]
    assert verify_file_log(log).ok


def test_a_store_with_an_older_eight_byte_head_opens_and_appends(tmp_path: Path) -> None:
    log = tmp_path / "log"
    with FileStore(log) as store:
        store.append([make_event("s-1")])
    (log / "HEAD").write_bytes(struct.pack("<Q", 1))
    with FileStore(log) as store:
        assert store.append([make_event("s-1")]) == [2]
    head, writing, durable, check = struct.unpack("<QQQQ", (log / "HEAD").read_bytes())
    assert (head, writing, durable) == (2, 0, 2) and check == durable ^ DURABLE_CHECK


def test_idempotency_index_runs_and_collisions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(idindex_module, "RECENT_LIMIT", 8)
    index = IdIndex()
    for position in range(1, 101):
        index.add(position * 7919, position)
    assert len(index) == 100
    assert len(index._runs) < 8, "runs of similar size are merged"
    found = index.candidates([7919 * 5, 7919 * 100, 3])
    assert found == {0: [5], 1: [100]}
    index.add(7919 * 5, 500)  # a second id with the same fingerprint
    assert sorted(index.candidates([7919 * 5])[0]) == [5, 500]


def test_fingerprint_collisions_do_not_merge_distinct_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wal, "fingerprints", lambda event_ids: [42] * len(event_ids))
    with FileStore(tmp_path / "log") as store:
        events = [make_event("run-a") for _ in range(5)]
        assert store.append(events) == [1, 2, 3, 4, 5]
        assert store.append(events[1:3]) == [2, 3]
        assert store.append([make_event("run-a")]) == [6]
    with FileStore(tmp_path / "log") as store:
        assert store.append([events[4]]) == [5]
        assert store.head_position() == 6


def test_idempotency_index_rebuilt_in_bulk_on_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("eventstore.file.recovery.RECENT_LIMIT", 16)
    with FileStore(tmp_path / "log") as store:
        events = [make_event(f"run-{i % 3}") for i in range(100)]
        store.append(events)
    with FileStore(tmp_path / "log") as store:
        assert store._log.ids._runs, "bulk-loaded into a sorted run"
        assert store.append(events[40:60]) == list(range(41, 61))
        assert store.head_position() == 100


def test_payload_round_trip_through_reopen(tmp_path: Path) -> None:
    envelope = make_event("run-a", note="payload")
    with FileStore(tmp_path / "log") as store:
        store.append([envelope])
    with FileStore(tmp_path / "log") as store:
        (read,) = list(store.read_all())
        assert decode_payload(read) == pb.RunStarted(run_id="payload")
        assert read.event_id == envelope.event_id


def test_index_checkpoint_restores_and_the_tail_is_scanned(tmp_path: Path) -> None:
    log = tmp_path / "log"
    events = [make_event(f"run-{i % 3}") for i in range(50)]
    with FileStore(log, segment_size=2048) as store:
        store.append(events[:30])
        store.append(events[30:40])
    crashed = FileStore(log, segment_size=2048)  # appends after the checkpoint, then "crashes" (never closed)
    crashed.append(events[40:])
    with FileStore(log, segment_size=2048) as store:
        assert (store.recovery.restored, store.recovery.records) == (40, 10)
        assert store.append(events[5:7] + events[45:46]) == [6, 7, 46]
        assert [e.event_id for e in store.read_all()] == [e.event_id for e in events]
        assert store.stream_version("run-1") == 17
    with FileStore(log, segment_size=2048) as store:
        assert (store.recovery.restored, store.recovery.records) == (50, 0)
        assert store.read_stream("run-2", from_version=16)[0].event_id == events[47].event_id
    crashed._close_files()  # release its descriptors without the orderly close that writes a checkpoint


def test_a_damaged_index_checkpoint_is_ignored(tmp_path: Path) -> None:
    log = tmp_path / "log"
    with FileStore(log) as store:
        store.append([make_event("run-a") for _ in range(20)])
    data = bytearray((log / "INDEX").read_bytes())
    data[-3] ^= 0x10
    (log / "INDEX").write_bytes(bytes(data))
    with FileStore(log) as store:
        assert (store.recovery.restored, store.recovery.records) == (0, 20)
        assert store.stream_version("run-a") == 20


def test_idempotency_index_memory_is_16_bytes_per_event() -> None:
    import numpy as np

    count = 1_000_000
    rng = np.random.default_rng(7)
    keys = rng.integers(0, 2**63, size=count, dtype=np.uint64)
    index = IdIndex()
    index.bulk_load(
        array("Q", keys.tobytes()), array("Q", np.arange(1, count + 1, dtype=np.uint64).tobytes())
    )
    for position in range(count + 1, count + 1001):
        index.add(int(rng.integers(0, 2**63)), position)
    assert len(index) == count + 1000
    assert index.memory_bytes() <= 16 * count + 1000 * 120
    probes = [int(keys[0]), int(keys[123_456]), int(keys[-1])]
    assert index.candidates(probes) == {0: [1], 1: [123_457], 2: [count]}
