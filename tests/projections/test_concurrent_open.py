"""Processes that open a fresh projection database at the same moment migrate it once, without error."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from projections.db import current_revision, head_revision, open_db

PROCESSES = 3
ROUNDS = 4


def _open(url: str, start: multiprocessing.synchronize.Barrier) -> None:  # type: ignore[name-defined]
    start.wait()
    open_db(url).dispose()


@pytest.mark.parametrize("round_number", range(ROUNDS))
def test_processes_opening_a_fresh_sqlite_database_at_once_all_succeed(
    tmp_path: Path, round_number: int
) -> None:
    url = f"sqlite:///{tmp_path / f'projections-{round_number}.sqlite'}"
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    processes = [context.Process(target=_open, args=(url, start)) for _ in range(PROCESSES)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [process.exitcode for process in processes] == [0] * PROCESSES
    engine = open_db(url)
    assert current_revision(engine) == head_revision()
    engine.dispose()
