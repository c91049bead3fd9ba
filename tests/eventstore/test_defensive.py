"""INDEX, HEAD and STORE are read defensively: whatever they hold, open and `esper verify` never raise a
traceback, agree with each other, and a checkpoint that does not parse or does not describe the log is
ignored and the log rescanned. Leftover temporary files are removed by the next writer."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import crc32c
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore import CorruptLogError, StoreUnavailable, indexfile
from eventstore.file import FileStore
from eventstore.verify import verify_file_log
from tests.eventstore.conftest import make_event
from tests.eventstore.damage import DAMAGE, damage

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def build(log: Path) -> list[str]:
    """A closed log of 24 events over 3 streams and 2+ segments; the event ids in order."""
    events = [make_event(f"run-{index % 3}") for index in range(24)]
    with FileStore(log, segment_size=1024) as store:
        for start in range(0, 24, 4):
            store.append(events[start : start + 4])
    return [event.event_id for event in events]


def with_crc(body: bytes) -> bytes:
    return indexfile.PREFIX.pack(indexfile.MAGIC, indexfile.VERSION, crc32c.crc32c(body)) + body


def assert_store_is_whole(log: Path, ids: list[str]) -> None:
    with FileStore(log, segment_size=1024) as store:
        assert [e.event_id for e in store.read_all()] == ids
        for stream in ("run-0", "run-1", "run-2"):
            assert [e.event_id for e in store.read_stream(stream)] == ids[int(stream[-1]) :: 3]
        duplicate = make_event("run-0", event_id=ids[7])
        assert store.append([duplicate]) == [8], "the idempotency index must not forget an id"
    assert verify_file_log(log).ok


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    log = tmp_path_factory.mktemp("original") / "log"
    return log, build(log)


def copy_of(original: tuple[Path, list[str]], directory: Path) -> tuple[Path, list[str]]:
    source, ids = original
    log = directory / "log"
    log.mkdir(parents=True)
    for path in source.iterdir():
        (log / path.name).write_bytes(path.read_bytes())
    return log, ids


@FUZZ
@given(body=st.binary(max_size=400))
def test_crc_valid_garbage_in_index_is_ignored(
    tmp_path_factory: pytest.TempPathFactory, original: tuple[Path, list[str]], body: bytes
) -> None:
    log, ids = copy_of(original, tmp_path_factory.mktemp("garbage"))
    (log / "INDEX").write_bytes(with_crc(body))
    assert_store_is_whole(log, ids)


@FUZZ
@given(seed=st.integers(0, 2**32), edits=st.integers(1, 4), kind=st.sampled_from(["flip", "cut", "insert"]))
def test_a_checkpoint_edited_and_resealed_is_ignored_or_right(
    tmp_path_factory: pytest.TempPathFactory,
    original: tuple[Path, list[str]],
    seed: int,
    edits: int,
    kind: str,
) -> None:
    """A real checkpoint with bytes changed and its CRC recomputed: open rescans or, if the edit left it
    describing the log, uses it; either way every read and the idempotency index are right."""
    log, ids = copy_of(original, tmp_path_factory.mktemp("edited"))
    body = bytearray((log / "INDEX").read_bytes()[indexfile.PREFIX.size :])
    rng = random.Random(seed)
    for _ in range(edits):
        at = rng.randrange(len(body))
        if kind == "flip":
            body[at] ^= 1 << rng.randrange(8)
        elif kind == "cut":
            del body[at : at + rng.randint(1, 16)]
        else:
            body[at:at] = rng.randbytes(rng.randint(1, 16))
    (log / "INDEX").write_bytes(with_crc(bytes(body)))
    assert_store_is_whole(log, ids)


@FUZZ
@given(data=st.binary(max_size=64))
def test_garbage_in_head_is_ignored(
    tmp_path_factory: pytest.TempPathFactory, original: tuple[Path, list[str]], data: bytes
) -> None:
    log, ids = copy_of(original, tmp_path_factory.mktemp("head"))
    (log / "HEAD").write_bytes(data)
    assert_store_is_whole(log, ids)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\xff\xfe not utf-8",
        b"[" * 100_000 + b"]" * 100_000,
        b"{}",
        b'{"format": 1}',
        b"null",
        b"x" * 10**6,
    ],
    ids=["empty", "not-utf8", "deeply-nested", "empty-object", "wrong-format", "null", "huge"],
)
def test_a_damaged_store_marker_is_one_error_for_open_and_verify(
    tmp_path: Path, original: tuple[Path, list[str]], content: bytes
) -> None:
    log, _ = copy_of(original, tmp_path)
    (log / "STORE").write_bytes(content)
    for read_only in (False, True):
        with pytest.raises(StoreUnavailable, match=r"STORE|not an esper event store"):
            FileStore(log, read_only=read_only)
    with pytest.raises(StoreUnavailable, match=r"STORE|not an esper event store"):
        verify_file_log(log)


@FUZZ
@given(steps=DAMAGE)
def test_verify_and_open_agree_on_every_damaged_log(
    tmp_path_factory: pytest.TempPathFactory,
    original: tuple[Path, list[str]],
    steps: list[tuple[str, str, float]],
) -> None:
    """verify sound → open as it is; verify torn tail → a writer truncates it and reaches verify's head;
    verify corrupt → every open refuses; no store → both say so."""
    log, _ = copy_of(original, tmp_path_factory.mktemp("agree"))
    damage(log, steps)
    try:
        report = verify_file_log(log)
    except StoreUnavailable:
        for read_only in (False, True):
            with pytest.raises(StoreUnavailable):
                FileStore(log, read_only=read_only)
        return
    if report.problem is not None and not report.problem.torn_tail:
        for read_only in (False, True):
            with pytest.raises(CorruptLogError):
                FileStore(log, read_only=read_only)
        return
    with FileStore(log, read_only=True) as reader:
        assert reader.head_position() == report.head
        assert bool(reader.recovery.torn_bytes) == (report.problem is not None)
    with FileStore(log) as writer:
        assert writer.head_position() == report.head
        assert bool(writer.recovery.truncated_bytes) == (report.problem is not None)
    assert verify_file_log(log).ok


def test_a_writer_removes_temporary_files_that_dead_processes_left(
    tmp_path: Path, original: tuple[Path, list[str]]
) -> None:
    log, ids = copy_of(original, tmp_path)
    dead = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True).stdout.strip()
    (log / "snapshots").mkdir()
    leftovers = [
        log / f".INDEX.{dead}.tmp",
        log / ".STORE.tmp",
        log / "snapshots" / f"{'a' * 40}.{dead}.7.tmp",
    ]
    live = log / f".INDEX.{os.getppid()}.tmp"  # another live process's checkpoint in the making
    for path in [*leftovers, live]:
        path.write_bytes(b"partial")
    with FileStore(log, read_only=True):
        assert all(path.exists() for path in leftovers), "a reader removes nothing"
    with FileStore(log) as store:
        assert sorted(store.recovery.removed_temporaries) == sorted(path.name for path in leftovers)
        assert "removed 3 leftover temporary file(s)" in store.recovery.describe()
    assert not any(path.exists() for path in leftovers) and live.exists()
    assert_store_is_whole(log, ids)


def test_a_creation_that_died_before_its_marker_is_an_empty_directory(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.mkdir()
    (log / ".STORE.tmp").write_text("{")
    with FileStore(log) as store:
        assert store.append([make_event("run-0")]) == [1]
