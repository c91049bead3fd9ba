"""Experience from the log alone: a real run on the GNN policy becomes an episode whose rewards add up; a
rollback voids what follows and puts its penalty on one transition; a policy update trained from a copy
of the log is bit-identical on CPU; the replay buffer's size and age bounds."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch

from domains.karn.registration import register_catalogue
from domains.simic.experience import Episode, ReplayBuffer, episodes
from domains.simic.gnn import GnnActorCritic, learn, ppo_batch
from domains.simic.ppo import PPOConfig, make_optimizer
from domains.simic.reward import RewardConfig
from domains.tamiyo.gnn.network import initial_network
from domains.tamiyo.policy_store import PolicyLibrary, publish
from domains.tolaria.config import build_config
from eventstore import open_store
from leyline import decode_payload, new_envelope, pb
from leyline.datadir import DataDir
from leyline.signing import Signer
from ops.compose import keyring_for, new_run
from tests.tolaria.helpers import SMALL

RUN = "rsimic"
REWARD = RewardConfig()


@pytest.fixture(scope="module")
def run_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real short run on the GNN policy (published with seed 0)."""
    data_dir = tmp_path_factory.mktemp("simic-log")
    store = open_store(DataDir(data_dir).log)
    try:
        register_catalogue(store)
        signer = Signer(keyring_for(DataDir(data_dir)))
        publish(store, PolicyLibrary(DataDir(data_dir)), signer, initial_network(0), version="v1")
        config = build_config({**SMALL, "controller": "gnn:v1", "epochs": 6, "seed": 3})
        new_run(store, DataDir(data_dir), config, RUN).run()
    finally:
        store.close()
    return data_dir


def rebuilt(data_dir: Path) -> tuple[list[Episode], list[pb.BlueprintDescriptor]]:
    store = open_store(DataDir(data_dir).log, create=False)
    try:
        return episodes(store, REWARD)
    finally:
        store.close()


def trained(data_dir: Path) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    found, descriptors = rebuilt(data_dir)
    network = initial_network(1)
    config = PPOConfig(target_kl=None, value_epochs=5)
    optimizer = make_optimizer(GnnActorCritic(network), config)
    diagnostics = learn(network, optimizer, found, descriptors, config, torch.Generator().manual_seed(0))
    return diagnostics.to_dict(), network.state_dict()


@pytest.mark.slow
def test_a_run_becomes_an_episode_whose_rewards_add_up(run_log: Path) -> None:
    found, descriptors = rebuilt(run_log)
    assert [e.run_id for e in found] == [RUN] and descriptors
    episode = found[0]
    store = open_store(DataDir(run_log).log, create=False)
    try:
        logged = [decode_payload(e) for e in store.read_all() if e.event_type == "DecisionMade"]
    finally:
        store.close()
    usable = [
        d for d in logged if isinstance(d, pb.DecisionMade) and d.action_probability > 0 and d.observation
    ]
    assert len(episode.transitions) == len(usable) and not episode.dead_ends
    for transition in episode.transitions:
        assert math.isclose(transition.log_prob, math.log(transition.decision.action_probability))
    total = sum(t.reward.total for t in episode.transitions)
    assert math.isclose(episode.summary["total"], total, abs_tol=1e-9)
    assert episode.transitions[-1].reward.accuracy > 0.0
    # the graphs rebuilt from the log give the behaviour policy's logged probabilities back
    batch = ppo_batch(initial_network(0), found, descriptors, PPOConfig())
    with torch.no_grad():
        evaluation = GnnActorCritic(initial_network(0)).evaluate(batch.observations, batch.actions)
    assert torch.allclose(evaluation.log_prob, batch.log_probs, atol=1e-4)


@pytest.mark.slow
def test_a_policy_update_from_a_copy_of_the_log_is_bit_identical(run_log: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(run_log, copy)
    diagnostics, weights = trained(run_log)
    copied_diagnostics, copied_weights = trained(copy)
    assert diagnostics == copied_diagnostics
    assert weights.keys() == copied_weights.keys()
    assert all(torch.equal(weights[k], copied_weights[k]) for k in weights)
    assert weights["value_head.2.bias"].ne(initial_network(1).state_dict()["value_head.2.bias"]).any()


@pytest.mark.slow
def test_a_rollback_voids_what_follows_and_penalises_one_transition(run_log: Path, tmp_path: Path) -> None:
    copy = tmp_path / "rolled"
    shutil.copytree(run_log, copy)
    before = rebuilt(copy)[0][0]
    voided_from = before.transitions[-3].position
    store = open_store(DataDir(copy).log)
    try:
        rollback = pb.RollbackCompleted(
            run_id=RUN, superseded_from=voided_from, superseded_to=before.last_position - 1
        )
        store.append([new_envelope("RollbackCompleted", f"run-{RUN}", rollback, run_id=RUN)])
    finally:
        store.close()
    after = rebuilt(copy)[0][0]
    assert [t.position for t in after.transitions] == [t.position for t in before.transitions[:-3]]
    assert [t.position for t in after.dead_ends] == [voided_from]
    assert after.dead_ends[0].reward.total == -REWARD.rollback_penalty
    assert after.summary["rollback_penalty"] == -REWARD.rollback_penalty
    assert after.transitions[-1].reward.accuracy > 0.0  # the outcome moves to the last kept decision


@pytest.mark.slow
def test_a_run_its_guard_ended_is_an_episode_ending_at_its_last_epoch(run_log: Path, tmp_path: Path) -> None:
    """The same run's events again under another run id, ending in RunFailed instead of RunCompleted."""
    copy = tmp_path / "failed"
    shutil.copytree(run_log, copy)
    store = open_store(DataDir(copy).log)
    try:
        again = []
        for envelope in store.read_all():
            if envelope.run_id != RUN:
                continue
            payload = decode_payload(envelope)
            kind = envelope.event_type
            if isinstance(payload, pb.RunCompleted):
                kind, payload = "RunFailed", pb.RunFailed(run_id="rfailed", error="RunError: exploded again")
            again.append(
                new_envelope(kind, envelope.stream.replace(RUN, "rfailed"), payload, run_id="rfailed")
            )
        store.append(again)
    finally:
        store.close()
    found = {e.run_id: e for e in rebuilt(copy)[0]}
    completed, failed = found[RUN], found["rfailed"]
    assert [t.action for t in failed.transitions] == [t.action for t in completed.transitions]
    assert [t.reward for t in failed.transitions] == [t.reward for t in completed.transitions]


def test_the_replay_buffer_bounds_size_and_age() -> None:
    def episode(run_id: str, size: int) -> Episode:
        return Episode(run_id, (), tuple([None] * size), {}, 0)  # type: ignore[list-item]

    buffer = ReplayBuffer(max_transitions=10, max_age=2)
    buffer.add([episode("a", 4), episode("b", 4)], round_=0)
    buffer.add([episode("c", 4)], round_=1)
    assert [e.run_id for e in buffer.episodes] == ["b", "c"] and len(buffer) == 8
    buffer.add([episode("d", 1)], round_=3)
    assert [e.run_id for e in buffer.episodes] == ["c", "d"]
    buffer.add([episode("d", 1)], round_=3)
    assert len(buffer) == 5
    buffer.add([], round_=6)
    assert buffer.episodes == []
