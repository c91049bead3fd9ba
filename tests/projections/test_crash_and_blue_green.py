"""SIGKILL of a runner mid-batch loses and duplicates nothing; readers never see a half-built blue/green."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from leyline import pb
from ops.bench._workload import realistic_log
from projections import apply_batch, catch_up, open_db, rebuild, schema, status
from tests.projections.helpers import dump, fresh_sqlite, postgres_database, to_store
from tests.projections.worker import view

ROOT = Path(__file__).resolve().parents[2]


def worker(*arguments: str, **options: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.projections.worker", *arguments],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.slow
def test_sigkill_mid_batch_then_restart_equals_a_rebuild(tmp_path: Path) -> None:
    log = list(realistic_log(12_000, seed=9))
    store = to_store(tmp_path / "log", log)
    head = store.head_position()
    store.close()
    engine = fresh_sqlite(tmp_path)
    url = engine.url.render_as_string()
    rng = random.Random(4)
    kills = 0
    progress: list[int] = []
    for _ in range(6):
        process = worker("catch-up", str(tmp_path / "log"), url, "1500")
        committed = min(entry.position for entry in status(engine))
        deadline = time.monotonic() + 120
        # wait until this process has committed a batch, then kill it somewhere inside a later one
        while min(entry.position for entry in status(engine)) == committed and process.poll() is None:
            assert time.monotonic() < deadline, "the runner committed nothing"
            time.sleep(0.02)
        if process.poll() is not None:
            break
        # a few milliseconds into the next batch: the faster bulk reads let a runner given 0.3 s here
        # finish the whole log before its first kill
        time.sleep(rng.uniform(0.0, 0.02))
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
        progress.append(min(entry.position for entry in status(engine)))
        if progress[-1] >= head:
            break
    assert kills >= 2, "the runner finished before it could be killed twice"
    assert progress == sorted(progress) and progress[0] < head
    store = to_store(tmp_path / "log2", log)
    catch_up(store, engine)
    store.close()
    full = fresh_sqlite(tmp_path, "full.sqlite")
    apply_batch(full, log)
    assert dump(engine) == dump(full)
    assert (
        dump(engine, include_checkpoints=True)["projection_checkpoints"]
        == dump(full, include_checkpoints=True)["projection_checkpoints"]
    )


def reader_during_blue_green(tmp_path: Path, engine: Engine) -> None:
    """A reader process checks every table's rows and the checkpoints while two blue/green rebuilds run."""
    log: list[pb.EventEnvelope] = list(realistic_log(6000, seed=2))
    store = to_store(tmp_path / "log", log)
    catch_up(store, engine)
    expected_file = tmp_path / "expected.json"
    expected_file.write_text(json.dumps(view(engine)))
    ready, stop = tmp_path / "ready", tmp_path / "stop"
    url = engine.url.render_as_string(hide_password=False)
    reader = worker("read", url, str(expected_file), str(ready), str(stop))
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert reader.poll() is None, reader.communicate()
            assert time.monotonic() < deadline, "the reader never read"
            time.sleep(0.02)
        before = dump(engine)
        for _ in range(2):
            rebuild(store, engine, blue_green=True, batch_size=800)
        assert reader.poll() is None, reader.communicate()
    finally:
        stop.touch()
        out, err = reader.communicate(timeout=60)
        store.close()
    assert reader.returncode == 0, err
    assert int(out) > 3
    assert dump(engine) == before


@pytest.mark.slow
def test_reader_never_sees_missing_or_half_built_data_during_blue_green(tmp_path: Path) -> None:
    reader_during_blue_green(tmp_path, fresh_sqlite(tmp_path))


@pytest.mark.slow
@pytest.mark.postgres
def test_reader_never_sees_missing_or_half_built_data_during_blue_green_on_postgres(tmp_path: Path) -> None:
    with postgres_database() as url:
        engine = open_db(url)
        try:
            reader_during_blue_green(tmp_path, engine)
        finally:
            engine.dispose()


@pytest.mark.postgres
def test_postgres_swap_waits_for_a_long_reader_instead_of_failing_it(tmp_path: Path) -> None:
    """A reader holding a table in an open transaction makes the swap retry; neither side fails."""
    store = to_store(tmp_path / "log", list(realistic_log(1500, seed=8)))
    with postgres_database() as url:
        engine = open_db(url)
        try:
            catch_up(store, engine)
            before = dump(engine)
            with engine.connect() as reader:
                transaction = reader.begin()
                reader.execute(select(func.count()).select_from(schema.runs)).scalar()
                result: list[dict[str, int]] = []
                swapper = threading.Thread(
                    target=lambda: result.append(rebuild(store, engine, ["runs"], blue_green=True))
                )
                swapper.start()
                time.sleep(1.5)  # longer than the swap's lock timeout and PostgreSQL's deadlock timeout
                assert swapper.is_alive(), "the swap cannot finish while the reader holds the table"
                assert reader.execute(select(func.count()).select_from(schema.run_epochs)).scalar() > 0
                transaction.commit()
            swapper.join(timeout=60)
            assert result == [{"runs": 1500}]
            assert dump(engine) == before
        finally:
            engine.dispose()
            store.close()
