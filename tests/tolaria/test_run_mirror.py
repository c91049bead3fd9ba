"""`esper run --redis URL` mirrors the log into Redis in the background and registers the catalogue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from eventstore import open_store
from eventstore.mirror import category_key
from leyline import category_of
from leyline.datadir import DataDir
from ops.cli import main

REDIS_DB = 14  # a database of this test's own: it flushes it


@pytest.fixture
def redis_url() -> Iterator[str]:
    url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


def test_run_mirrors_every_event_and_registers_the_catalogue(
    tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "run",
            "--data-dir",
            str(tmp_path),
            "--epochs",
            "2",
            "--controller",
            "noop",
            "--redis",
            redis_url,
            "--json",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    store = open_store(DataDir(tmp_path).log)
    try:
        events = list(store.read_all())
    finally:
        store.close()
    assert summary["last_position"] == events[-1].global_position
    assert sum(e.event_type == "BlueprintRegistered" for e in events) == 52
    client = redis.Redis.from_url(redis_url)
    try:
        for category in {category_of(e.stream) for e in events}:
            mirrored = client.xrange(category_key("esper", category))
            in_log = [e.global_position for e in events if category_of(e.stream) == category]
            assert [int(entry_id.split(b"-")[0]) for entry_id, _ in mirrored] == in_log
    finally:
        client.close()


def test_without_a_redis_url_nothing_contacts_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["run", "--data-dir", str(tmp_path), "--epochs", "1", "--controller", "noop", "--json"]) == 0
    assert not (DataDir(tmp_path).mirror).exists()
