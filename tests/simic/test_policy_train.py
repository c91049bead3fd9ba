"""`esper policy train`: a round of real runs in worker processes on the same log, a PPO update, the result
a training candidate (PolicyTrained with its parent, content hash and the update's diagnostics; never
published); the next round's workers run the candidate by content hash; another invocation resumes from the
log (nothing is run or recorded twice)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domains.tamiyo.policy_store import published_versions
from eventstore import open_store
from leyline import decode_payload, pb
from leyline.datadir import DataDir
from ops.cli import main

TRAIN = ["policy", "train", "--rounds", "1", "--episodes", "2", "--epochs", "3", "--workers", "2", "--json"]


@pytest.mark.slow
def test_rounds_train_candidates_that_are_not_published_and_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
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
    assert main([*TRAIN, "--rounds", "2", "--data-dir", str(tmp_path)]) == 0  # round 1 runs simic-r0
    [round_] = json.loads(capsys.readouterr().out)["rounds"]
    assert round_["version"] == "simic-r1" and round_["parent"] == "simic-r0"
    assert main(["policy", "activate", "simic-r0", "--run", "any", "--data-dir", str(tmp_path)]) == 1
    assert "simic-r0 is a training candidate, not a release" in capsys.readouterr().err

    store = open_store(DataDir(tmp_path).log, create=False)
    try:
        versions = published_versions(store)
        trained = [decode_payload(e) for e in store.read_all() if e.event_type == "PolicyTrained"]
        runs = {e.run_id for e in store.read_all() if e.event_type == "RunCompleted"}
        deciding = {
            (e.run_id, p.policy_version)
            for e in store.read_all()
            if e.event_type == "DecisionMade"
            and isinstance(p := decode_payload(e), pb.DecisionMade)
            and p.action_probability > 0
        }
    finally:
        store.close()
    assert list(versions) == ["v0"]  # nothing a training made is published before the gate
    assert runs == {"simic-r0-e0", "simic-r0-e1", "simic-r1-e0", "simic-r1-e1"}
    assert {version for run, version in deciding if run.startswith("simic-r1-")} == {"simic-r0"}
    first, second = trained
    assert isinstance(first, pb.PolicyTrained) and isinstance(second, pb.PolicyTrained)
    assert (first.update.version, first.update.parent_version) == ("simic-r0", "v0")
    assert (second.update.version, second.update.parent_version) == ("simic-r1", "simic-r0")
    assert len(first.update.content_hash) == 64 and first.update.content_hash != second.update.content_hash
    assert first.experiences > 0 and "explained_variance" in first.update.training_metrics
    assert "explained_variance_after" in first.update.training_metrics


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
