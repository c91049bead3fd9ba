"""`esper mirror`: options, errors a user can act on, JSON output, and a mirror process SIGKILLed mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from eventstore import open_store
from eventstore.mirror import marker_key
from ops.cli import main
from tests.mirror.redis_support import SHARED_REDIS, ScriptReplyProxy, epoch_event, wait_until
from tests.mirror.test_mirror import assert_redis_equals_log, mixed_events

pytestmark = pytest.mark.redis


def make_data_dir(path: Path, count: int) -> Path:
    with open_store(path / "log") as store:
        for start in range(0, count, 1000):
            store.append(mixed_events(min(1000, count - start)))
    return path


def test_without_a_redis_url_it_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    data_dir = make_data_dir(tmp_path, 3)
    assert main(["mirror", "--data-dir", str(data_dir)]) == 2
    assert "pass --redis URL or set $REDIS_URL" in capsys.readouterr().err


def test_unreachable_redis_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = make_data_dir(tmp_path, 3)
    assert main(["mirror", "--data-dir", str(data_dir), "--redis", "redis://127.0.0.1:1/0", "--json"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in err and "Traceback" not in err


def test_bad_options_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = make_data_dir(tmp_path, 3)
    base = ["mirror", "--data-dir", str(data_dir), "--redis", SHARED_REDIS]
    assert main([*base, "--reroute-above", "10", "--drop-above", "5"]) == 2
    assert main([*base, "--batch", "0"]) == 2
    assert main(["mirror", "--data-dir", str(tmp_path / "absent"), "--redis", SHARED_REDIS]) == 2
    assert main(["mirror", "--data-dir", str(data_dir), "--redis", "http://nope"]) == 2


def test_mirrors_to_the_head_and_reports_json(
    tmp_path: Path, shared_redis: redis.Redis, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = make_data_dir(tmp_path, 120)
    args = ["mirror", "--data-dir", str(data_dir), "--redis", SHARED_REDIS, "--prefix", prefix, "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["position"] == report["head"] == 120 and report["mirrored_from"] == 0
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["mirrored_from"] == 120
    with open_store(data_dir / "log") as store:
        assert_redis_equals_log(shared_redis, store, prefix)


def test_mirror_process_killed_mid_run_resumes_without_gap_or_duplicate(
    tmp_path: Path, shared_redis: redis.Redis, prefix: str
) -> None:
    data_dir = make_data_dir(tmp_path, 8_000)
    command = [
        sys.executable, "-m", "ops.cli", "mirror", "--data-dir", str(data_dir), "--redis", SHARED_REDIS,
        "--prefix", prefix, "--batch", "20", "--json",
    ]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(
            lambda: (
                int(shared_redis.hget(marker_key(prefix), "position") or 0) > 1_000
                or process.poll() is not None
            )
        )
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    held = int(shared_redis.hget(marker_key(prefix), "position") or 0)
    assert 0 < held < 8_000, "the mirror was not killed mid-run"
    with open_store(data_dir / "log") as store:
        store.append([epoch_event(epoch=i) for i in range(10)])
    assert subprocess.run(command, env=environment, capture_output=True).returncode == 0
    with open_store(data_dir / "log") as store:
        assert_redis_equals_log(shared_redis, store, prefix)


def test_follow_mirrors_new_appends_until_interrupted(
    tmp_path: Path, shared_redis: redis.Redis, prefix: str
) -> None:
    data_dir = make_data_dir(tmp_path, 50)
    command = [
        sys.executable, "-m", "ops.cli", "mirror", "--follow", "--data-dir", str(data_dir),
        "--redis", SHARED_REDIS, "--prefix", prefix, "--json",
    ]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:

        def mirrored() -> int:
            assert process.poll() is None, "esper mirror --follow exited on its own"
            return int(shared_redis.hget(marker_key(prefix), "position") or 0)

        wait_until(lambda: mirrored() == 50)
        with open_store(data_dir / "log") as store:  # another process appends while it follows
            store.append(mixed_events(30))
        wait_until(lambda: mirrored() == 80)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err.decode()
    assert json.loads(out)["position"] == 80
    with open_store(data_dir / "log") as store:
        assert_redis_equals_log(shared_redis, store, prefix)


def test_an_interrupt_while_a_batch_commits_reports_what_redis_holds(
    tmp_path: Path, shared_redis: redis.Redis, prefix: str
) -> None:
    """Ctrl-C lands while Redis has committed a batch whose reply has not reached the mirror yet (held by
    a proxy, as load would delay it): the summary still says what Redis holds, never the position before."""
    data_dir = make_data_dir(tmp_path, 50)
    proxy = ScriptReplyProxy(6379)
    command = [
        sys.executable, "-m", "ops.cli", "mirror", "--follow", "--data-dir", str(data_dir),
        "--redis", proxy.url, "--prefix", prefix, "--json",
    ]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:

        def mirrored() -> int:
            assert process.poll() is None, "esper mirror --follow exited on its own"
            return int(shared_redis.hget(marker_key(prefix), "position") or 0)

        wait_until(lambda: mirrored() == 50)
        proxy.arm()
        with open_store(data_dir / "log") as store:
            store.append(mixed_events(30))
        wait_until(lambda: mirrored() == 80)  # committed in Redis; the reply is held
        process.send_signal(signal.SIGINT)
        proxy.release()
        out, err = process.communicate(timeout=60)
    finally:
        proxy.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err.decode()
    assert json.loads(out)["position"] == 80
