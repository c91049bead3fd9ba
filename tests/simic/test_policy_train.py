"""`esper policy train`: a round of real runs in worker processes on the same log, a PPO update, the result
published with its parent and a PolicyTrained carrying the update's diagnostics; a second invocation
resumes from the log (nothing is run or published twice)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domains.tamiyo.policy_store import published_versions, update_of
from eventstore import open_store
from leyline import decode_payload, pb
from leyline.datadir import DataDir
from ops.cli import main

TRAIN = ["policy", "train", "--rounds", "1", "--episodes", "2", "--epochs", "3", "--workers", "2", "--json"]


@pytest.mark.slow
def test_a_round_trains_publishes_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "init", "--version", "v0", "--data-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main([*TRAIN, "--data-dir", str(tmp_path)]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["version"] == "simic-r0"
    [round_] = document["rounds"]
    assert round_["parent"] == "v0" and round_["episodes"] == 2
    for key in ("policy_loss", "value_loss", "approx_kl", "clip_fraction", "explained_variance"):
        assert key in round_
    assert "entropy_operation" in round_ and "reward_total" in round_

    assert main([*TRAIN, "--data-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == {"name": "simic", "version": "simic-r0", "rounds": []}
    assert main(["policy", "activate", "simic-r0", "--run", "any", "--data-dir", str(tmp_path)]) == 1
    assert "simic-r0 is a training candidate, not a release" in capsys.readouterr().err

    store = open_store(DataDir(tmp_path).log, create=False)
    try:
        versions = published_versions(store)
        trained = [decode_payload(e) for e in store.read_all() if e.event_type == "PolicyTrained"]
        runs = {e.run_id for e in store.read_all() if e.event_type == "RunCompleted"}
    finally:
        store.close()
    assert list(versions) == ["v0", "simic-r0"]
    assert update_of(versions["simic-r0"]).parent_version == "v0"
    assert runs == {"simic-r0-e0", "simic-r0-e1"}
    [event] = trained
    assert isinstance(event, pb.PolicyTrained) and event.update.version == "simic-r0"
    assert event.experiences > 0 and "explained_variance" in event.update.training_metrics


def test_a_task_file_without_held_out_tasks_is_bad_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = tmp_path / "tasks.toml"
    tasks.write_text(
        '[train]\nepochs = 2\nseeds = [0, 10]\n[[train.tasks]]\nhost = "cnn-lite"\ndataset = "digits"\n'
    )
    assert main(["policy", "train", "--tasks", str(tasks), "--data-dir", str(tmp_path)]) == 2
    assert "missing section(s) ['held_out']" in capsys.readouterr().err


@pytest.mark.slow
def test_validating_an_unknown_or_the_active_version_is_a_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "init", "--version", "v0", "--data-dir", str(tmp_path)]) == 0
    assert main(["policy", "validate", "nope", "--data-dir", str(tmp_path)]) == 1
    assert "unknown policy version 'nope'" in capsys.readouterr().err
    assert main(["policy", "validate", "v0", "--data-dir", str(tmp_path)]) == 1
    assert "v0 is the active policy" in capsys.readouterr().err
