"""Crash tests: a child appending with fsync `always` is killed with SIGKILL at random moments, many times.

After every kill the log is reopened: every append acknowledged before the kill is there, every batch is
there entirely or not at all, the log verifies, and appends continue (the next child appends to it).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from eventstore.file import FileStore
from eventstore.verify import verify_file_log
from leyline import decode_payload, pb
from tests.eventstore.writer_child import batch_events

KILLS = 55
SEGMENT_SIZE = 32 * 1024
FORK = multiprocessing.get_context("fork")


def append_forever(location: Path, name: str, fd: int) -> None:
    """The child: append batches of 1-4 events with fsync `always`, reporting each acknowledgement."""
    store = FileStore(location, fsync="always", segment_size=SEGMENT_SIZE)
    os.write(fd, b"ready\n")
    rng = random.Random(name)
    batch = 0
    while True:
        store.append(batch_events(name, batch, rng))
        os.write(fd, f"ack {batch}\n".encode())
        batch += 1


def run_and_kill(location: Path, name: str, rng: random.Random) -> set[int]:
    """Fork a writer, SIGKILL it at a random moment once it is appending; the batches it acknowledged."""
    read_fd, write_fd = os.pipe()
    child = FORK.Process(target=append_forever, args=(location, name, write_fd))
    child.start()
    os.close(write_fd)
    lines: list[str] = []
    ready = threading.Event()

    def reader() -> None:
        with os.fdopen(read_fd) as pipe:
            for line in pipe:
                lines.append(line)
                ready.set()
        ready.set()

    thread = threading.Thread(target=reader)
    thread.start()
    ready.wait(60)
    time.sleep(rng.uniform(0.0, 0.2))
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    thread.join()
    assert child.exitcode == -signal.SIGKILL
    return {int(line.split()[1]) for line in lines if line.startswith("ack")}


def check_log(location: Path, acknowledged: dict[str, set[int]]) -> int:
    store = FileStore(location)
    try:
        batches: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
        previous = 0
        for envelope in store.read_all():
            assert envelope.global_position == previous + 1
            previous = envelope.global_position
            payload = decode_payload(envelope)
            assert isinstance(payload, pb.RunStarted)
            writer, batch, index, size = payload.run_id.split("/")
            batches[(writer, int(batch))].append((int(index), int(size)))
        for key, members in batches.items():
            assert sorted(member for member, _ in members) == list(range(members[0][1])), key
        for name, acked in acknowledged.items():
            missing = [batch for batch in acked if (name, batch) not in batches]
            assert not missing, f"acknowledged batches of {name} lost: {missing}"
        return store.head_position()
    finally:
        store.close()


@pytest.mark.slow
def test_sigkill_loses_no_acknowledged_append(tmp_path: Path) -> None:
    location = tmp_path / "log"
    FileStore(location).close()
    rng = random.Random(20261124)
    acknowledged: dict[str, set[int]] = {}
    heads = []
    for kill in range(KILLS):
        name = f"w{kill}"
        acknowledged[name] = run_and_kill(location, name, rng)
        report = verify_file_log(location)
        if report.problem is not None:
            assert report.problem.torn_tail, report.problem.describe()
        heads.append(check_log(location, acknowledged))
        assert verify_file_log(location).ok
    assert heads == sorted(heads)
    assert heads[-1] > KILLS
    assert len(list(location.glob("*.wal"))) > 1, "the test should cross segment boundaries"
    # each child appended after the previous one was killed: appends continue after recovery
    assert sum(1 for acks in acknowledged.values() if acks) >= KILLS // 2
