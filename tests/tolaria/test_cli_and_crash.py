"""`esper run` and `esper rollback` as a user runs them: SIGKILLed runs resumed, live rollback, bad input."""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from domains.tolaria.aggregate import fold
from domains.tolaria.control import OPERATOR
from eventstore import EventStore, open_store
from eventstore.file import FileStore, FsyncPolicy
from leyline import pb
from leyline.datadir import DataDir
from ops import compose
from ops.cli import main
from ops.storeopts import open_store_from_args
from tests.tolaria.helpers import SMALL, checkpoint_hashes, epoch_records, payloads, run_events

ROOT = Path(__file__).resolve().parents[2]
CRASH_CONFIG = {**SMALL, "epochs": 30}


def esper(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ops.cli", *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )


def interruptible() -> None:
    """SIGINT back to its default in the child, as in a terminal: a suite started in the background (`cmd &`
    from a script, nohup) passes SIGINT down ignored, and Python then installs no KeyboardInterrupt, so the
    run this test interrupts as an operator's Ctrl-C would train on (it did, to epoch 2860, in such a run)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def head(data_dir: Path) -> int:
    if not (DataDir(data_dir).log / "STORE").exists():
        return 0
    store = open_store(DataDir(data_dir).log, create=False)
    try:
        return store.head_position()
    finally:
        store.close()


def finish(process: subprocess.Popen[str], timeout: float = 300) -> dict[str, Any]:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_is_bit_identical(tmp_path: Path) -> None:
    config = tmp_path / "run.json"
    config.write_text(json.dumps(CRASH_CONFIG))
    reference = finish(
        esper("run", "--data-dir", tmp_path / "ref", "--run-id", "rcrash", "--config", config, "--json")
    )

    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    data_dir = tmp_path / "killed"
    kills = 0
    while kills < 5:
        started = head(data_dir) > 0 and bool(run_events(data_dir, "rcrash"))  # the run stream exists
        args = ["--resume"] if started else ["--config", config]
        process = esper("run", "--data-dir", data_dir, "--run-id", "rcrash", "--json", *args)
        target = head(data_dir) + rng.randint(0, 6)
        while process.poll() is None and head(data_dir) < target:
            time.sleep(0.02)
        # a few milliseconds past the target: at ~40 epochs/s a 0.1 s delay let five kills carry the run to
        # its end, and a kill then landed after RunCompleted
        time.sleep(rng.uniform(0, 0.02))
        if process.poll() is not None:
            pytest.fail(f"the run ended before kill {kills + 1} (seed {seed}): {process.communicate()[1]}")
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
    if not payloads(run_events(data_dir, "rcrash"), "RunCompleted"):  # the last kill may land at exit
        finish(esper("run", "--data-dir", data_dir, "--run-id", "rcrash", "--json", "--resume"))
    events = run_events(data_dir, "rcrash")
    (resumed,) = payloads(events, "RunCompleted")
    assert resumed.model_sha256 == reference["model_sha256"], f"seed {seed}"
    assert resumed.test_accuracy == pytest.approx(reference["test_accuracy"], abs=1e-6)
    assert resumed.epochs == reference["epochs"] == 30
    reference_events = run_events(tmp_path / "ref", "rcrash")
    assert epoch_records(events) == epoch_records(reference_events), f"seed {seed}"
    assert checkpoint_hashes(events) == checkpoint_hashes(reference_events)
    assert [p.state.epoch for p in payloads(events, "EpochCompleted")] == list(range(1, 31))
    assert len(payloads(events, "RunStarted")) >= 2


@pytest.mark.slow
def test_live_rollback_from_another_process_lands_at_the_next_boundary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "run.json"
    config.write_text(json.dumps({**SMALL, "epochs": 100_000}))
    run = esper("run", "--data-dir", tmp_path, "--run-id", "rlive", "--config", config, "--json")
    try:
        deadline = time.monotonic() + 120
        while len(checkpoint_hashes(run_events(tmp_path, "rlive")) if head(tmp_path) else {}) < 8:
            assert run.poll() is None and time.monotonic() < deadline, "the run did not reach epoch 8"
            time.sleep(0.1)
        request = esper(
            "rollback", "--data-dir", tmp_path, "--run", "rlive", "--to-epoch", "2", "--wait", "60", "--json"
        )
        answer = finish(request, timeout=120)
        assert answer["status"] == "completed" and answer["target_epoch"] == 2
        assert answer["mode"] == "full"  # epoch 2 has left the cache of the last 5 checkpoints
        assert run.poll() is None, "the run must go on without a restart"
    finally:
        run.send_signal(signal.SIGINT)
        run.communicate(timeout=60)
    # Read once the run has stopped, so that these events and the audit below see the same log: the run
    # trains on while this test works, on a loaded machine thousands of epochs further, and a later guard
    # rollback (a loss explosion at lr 0.01) may add a RollbackCompleted of its own.
    events = run_events(tmp_path, "rlive")
    kinds = [e.event_type for e in events]
    requested_at = kinds.index("RollbackRequested")
    requested = events[requested_at]
    assert payloads([requested], "RollbackRequested")[0].requested_by.startswith(OPERATOR)
    at = kinds.index("RollbackCompleted", requested_at)
    (completed,) = payloads([events[at]], "RollbackCompleted")
    assert completed.target_epoch == 2 and completed.superseded_to == requested.global_position - 1
    state = fold(events[: at + 1])
    assert state.epoch == 2 and [c.epoch for c in state.checkpoints] == [1, 2]
    assert state.superseded == ((completed.superseded_from, completed.superseded_to),)
    superseded_epochs = epochs_within(events, [(completed.superseded_from, completed.superseded_to)])
    assert superseded_epochs and min(superseded_epochs) == 3
    after = [p.state.epoch for p in payloads(events[at:], "EpochCompleted")]
    assert not after or after[0] == 3  # training went on from the target epoch

    # The runs read model, as of the rollback, shows the run at epoch 2 with the later epochs superseded.
    capsys.readouterr()
    as_of = str(events[at].global_position)
    assert run_cli("audit", "run", "rlive", "--data-dir", tmp_path, "--as-of", as_of, "--json") == 0
    audit = json.loads(capsys.readouterr().out)
    assert audit["run"]["last_epoch"] == 2
    standing = [row["epoch"] for row in audit["epochs"] if not row["superseded"]]
    assert standing == [1, 2]
    assert run_cli("audit", "run", "rlive", "--data-dir", tmp_path, "--json") == 0
    audit = json.loads(capsys.readouterr().out)
    ranges = [(c.superseded_from, c.superseded_to) for c in payloads(events, "RollbackCompleted")]
    assert {row["epoch"] for row in audit["epochs"] if row["superseded"]} == epochs_within(events, ranges)


def epochs_within(events: list[pb.EventEnvelope], ranges: list[tuple[int, int]]) -> set[int]:
    """The epochs whose EpochCompleted lies in one of the position ranges (a rollback's superseded events)."""
    return {
        p.state.epoch
        for e in events
        if e.event_type == "EpochCompleted" and any(low <= e.global_position <= high for low, high in ranges)
        for p in payloads([e], "EpochCompleted")
    }


def run_cli(*args: str | Path) -> int:
    return main([str(a) for a in args])


def test_bad_input_is_one_line_and_a_nonzero_exit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"epoch": 3}))
    assert run_cli("run", "--data-dir", tmp_path / "d", "--config", bad) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown config key(s) epoch" in err
    assert run_cli("run", "--data-dir", tmp_path / "missing", "--resume") == 2
    assert "does not exist" in capsys.readouterr().err
    assert run_cli("run", "--data-dir", tmp_path / "d", "--run-id", "bad-id") == 2
    assert "run id" in capsys.readouterr().err


def test_run_json_then_resume_and_rollback_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "run.json"
    config.write_text(json.dumps({**SMALL, "epochs": 2}))
    assert run_cli("run", "--data-dir", tmp_path, "--config", config, "--run-id", "rcli", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    for key in ("run_id", "epochs", "test_accuracy", "parameters", "seeds", "last_position", "model_sha256"):
        assert key in summary
    assert summary["run_id"] == "rcli" and summary["epochs"] == 2 and len(summary["model_sha256"]) == 64
    assert run_cli("run", "--data-dir", tmp_path, "--resume", "--run-id", "rnope") == 1  # an unknown id
    assert "run rnope does not exist" in capsys.readouterr().err
    assert run_cli("run", "--data-dir", tmp_path, "--resume") == 1
    assert "already completed" in capsys.readouterr().err
    assert run_cli("rollback", "--data-dir", tmp_path, "--run", "rnope", "--to-epoch", "1") == 1
    assert "does not exist" in capsys.readouterr().err
    assert run_cli("rollback", "--data-dir", tmp_path, "--run", "rcli", "--to-epoch", "1") == 1
    assert "is completed" in capsys.readouterr().err
    assert run_cli("run", "--data-dir", tmp_path, "--config", config, "--run-id", "rcli") == 1
    assert "already exists" in capsys.readouterr().err


def test_run_fsync_policy_reaches_the_file_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[EventStore] = []

    def recording(args: argparse.Namespace, create: bool = False, **options: object) -> EventStore:
        store = open_store_from_args(args, create=create, **options)
        opened.append(store)
        return store

    monkeypatch.setattr(compose, "open_store_from_args", recording)
    config = tmp_path / "run.json"
    config.write_text(json.dumps({**SMALL, "epochs": 1}))
    for policy in ("always", "interval:5", "batch"):
        data_dir = tmp_path / policy.replace(":", "-")
        assert run_cli("run", "--data-dir", data_dir, "--config", config, "--fsync", policy, "--json") == 0
        assert json.loads(capsys.readouterr().out)["epochs"] == 1
        store = opened[-1]
        assert isinstance(store, FileStore) and store.policy == FsyncPolicy.parse(policy)
    assert run_cli("run", "--data-dir", tmp_path / "bad", "--fsync", "sometimes") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--fsync" in err and "interval:<ms>" in err
