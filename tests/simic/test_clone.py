"""Behaviour cloning from the log: the demonstrations are the ε-heuristic's own decisions (not its
exploring draws); cloning them fits every head that acted (cross-entropy down, accuracy up) and is
bit-identical from a copy of the log on CPU; `esper policy train --clone` needs ε within (0, 0.5), records
the clone as the candidate round 0 starts from, and resumes without running or recording it twice."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from domains.karn.registration import register_catalogue
from domains.simic.clone import CloneConfig, CloneDiagnostics, clone, demonstrations
from domains.simic.experience import Episode, Transition, episodes
from domains.simic.reward import RewardComponents, RewardConfig
from domains.tamiyo.gnn.network import initial_network
from eventstore import open_store
from leyline import pb
from leyline.datadir import DataDir
from ops.cli import main
from ops.policy_episodes import Job, run_job
from ops.policy_validate import load_tasks

RUN = "rclone"
EXPLORE = 0.2


def transition(probability: float) -> Transition:
    return Transition(0, pb.DecisionMade(), (0, -1, -1), math.log(probability), RewardComponents())


def test_demonstrations_are_the_heuristics_own_decisions() -> None:
    own, explored, dead_end = transition(0.8 + 0.2 / 3), transition(0.2 / 3), transition(0.9)
    episode = Episode("r", (own, explored), (dead_end,), {}, 0)
    assert demonstrations([episode], CloneConfig()) == [own, dead_end]


@pytest.fixture(scope="module")
def heuristic_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ε-heuristic run of the bundled training tasks (12 epochs: it germinates)."""
    data_dir = tmp_path_factory.mktemp("clone-log")
    DataDir(data_dir).create()
    store = open_store(DataDir(data_dir).log)
    try:
        register_catalogue(store)
    finally:
        store.close()
    episode = load_tasks(None).with_epochs(12).train.training_episode(0, 0, 0, 1)
    run_job(str(data_dir), Job(RUN, episode.run_config("tamiyo"), explore=EXPLORE))
    return data_dir


def cloned(data_dir: Path) -> tuple[CloneDiagnostics, dict[str, torch.Tensor]]:
    store = open_store(DataDir(data_dir).log, create=False)
    try:
        found, descriptors = episodes(store, RewardConfig())
    finally:
        store.close()
    network = initial_network(1)
    demonstrated = demonstrations(found, CloneConfig())
    diagnostics = clone(network, demonstrated, descriptors, CloneConfig(), torch.Generator().manual_seed(0))
    return diagnostics, network.state_dict()


@pytest.mark.slow
def test_a_clone_fits_the_heuristic_and_is_bit_identical_from_a_copy(
    heuristic_log: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(heuristic_log, copy)
    diagnostics, weights = cloned(heuristic_log)
    again, copied = cloned(copy)
    assert diagnostics == again
    assert all(torch.equal(weights[k], copied[k]) for k in weights)
    assert diagnostics.demonstrations > 0
    assert {"operation", "slot", "blueprint"} <= diagnostics.loss.keys()  # it germinated
    for head, loss in diagnostics.loss.items():
        assert loss < diagnostics.loss_before[head]
        assert diagnostics.accuracy[head] >= diagnostics.accuracy_before[head]
    assert diagnostics.accuracy["operation"] > 0.9
    flat = diagnostics.to_dict()
    assert flat["clone_demonstrations"] == diagnostics.demonstrations and "clone_entropy_blueprint" in flat


@pytest.mark.parametrize("explore", ["0", "0.5"])
def test_policy_train_clone_needs_an_epsilon_below_one_half(
    explore: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["policy", "train", "--clone", "2", "--explore", explore, "--data-dir", str(tmp_path)])
    assert code != 0
    assert "--clone needs --explore within (0, 0.5)" in capsys.readouterr().err


@pytest.mark.slow
def test_policy_train_clone_warm_starts_round_zero_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "init", "--version", "v0", "--data-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    train = ["policy", "train", "--clone", "1", "--rounds", "1", "--episodes", "1", "--epochs", "12"]
    assert main([*train, "--json", "--data-dir", str(tmp_path)]) == 0
    warm, first = json.loads(capsys.readouterr().out)["rounds"]
    assert (warm["version"], warm["parent"], warm["episodes"]) == ("simic-clone", "v0", 1)
    assert warm["clone_demonstrations"] > 0 and "clone_accuracy_operation" in warm
    assert (first["version"], first["parent"]) == ("simic-r0", "simic-clone")
    assert main([*train, "--json", "--data-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["rounds"] == []
    store = open_store(DataDir(tmp_path).log, create=False)
    try:
        runs = {e.run_id for e in store.read_all() if e.event_type == "RunCompleted"}
    finally:
        store.close()
    assert runs == {"simic-clone-e0", "simic-r0-e0"}
