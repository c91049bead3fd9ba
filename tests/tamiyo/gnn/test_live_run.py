"""A live run on the learned policy: `esper policy` against it, a mid-run swap whose decisions name both
versions, and a resume across the swap that stays bit-identical on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from domains.tamiyo.gnn.network import initial_network
from domains.tamiyo.policy_store import PolicyLibrary, publish, update_of
from domains.tolaria.config import build_config
from domains.tolaria.trainer import Trainer
from eventstore import EventStore, open_store
from leyline import decode_payload, pb
from leyline.datadir import DataDir
from leyline.signing import Keyring, Signer
from ops.cli import main
from ops.compose import keyring_for, new_run, resume
from tests.tolaria.helpers import SMALL

RUN = "rgnn"
CONFIG = {**SMALL, "controller": "gnn:v1", "epochs": 7}
REQUEST_AFTER = 2  # the request is seen at boundary 3 and takes effect at boundary 4


def publish_versions(data_dir: Path) -> None:
    store = open_store(DataDir(data_dir).log)
    try:
        signer = Signer(keyring_for(DataDir(data_dir)))
        for version, seed in (("v1", 0), ("v2", 1)):
            publish(store, PolicyLibrary(DataDir(data_dir)), signer, initial_network(seed), version=version)
    finally:
        store.close()


def esper(*argv: str, data_dir: Path) -> int:
    return main([*argv, "--data-dir", str(data_dir)])


def start(data_dir: Path) -> tuple[EventStore, Trainer]:
    store = open_store(DataDir(data_dir).log)
    return store, new_run(store, DataDir(data_dir), build_config(CONFIG), RUN)


def until_request(trainer: Trainer, data_dir: Path) -> None:
    for _ in range(REQUEST_AFTER):
        trainer.run_epoch()
    assert esper("policy", "activate", "v2", "--run", RUN, data_dir=data_dir) == 0


def decision_versions(events: list[pb.EventEnvelope]) -> dict[int, str]:
    versions = {}
    for envelope in events:
        if envelope.event_type == "DecisionMade":
            payload = decode_payload(envelope)
            assert isinstance(payload, pb.DecisionMade)
            versions[payload.epoch] = payload.policy_version
    return versions


def all_events(data_dir: Path) -> list[pb.EventEnvelope]:
    store = open_store(DataDir(data_dir).log, create=False)
    try:
        return list(store.read_all())
    finally:
        store.close()


@pytest.mark.slow
def test_a_policy_swapped_mid_run_continues_and_resumes_bit_identically(tmp_path: Path) -> None:
    reference_dir = tmp_path / "ref"
    publish_versions(reference_dir)
    store, trainer = start(reference_dir)
    try:
        until_request(trainer, reference_dir)
        reference = trainer.run()
    finally:
        store.close()
    events = all_events(reference_dir)
    versions = decision_versions([e for e in events if e.run_id == RUN])
    assert versions == {1: "v1", 2: "v1", 3: "v1", 4: "v2", 5: "v2", 6: "v2", 7: "v2"}
    activations = [
        (e.event_type, decode_payload(e).version) for e in events if e.event_type == "PolicyActivated"
    ]
    assert activations == [("PolicyActivated", "v1"), ("PolicyActivated", "v2")]
    assert reference.status == "completed" and reference.epochs == 7

    cut_dir = tmp_path / "cut"
    publish_versions(cut_dir)
    store, trainer = start(cut_dir)
    until_request(trainer, cut_dir)
    trainer.run_epoch()  # boundary 3 sees the request; the process dies before the swap at boundary 4
    trainer.sink.close()
    store.close()
    store = open_store(DataDir(cut_dir).log)
    try:
        summary = resume(store, DataDir(cut_dir), RUN).run()
    finally:
        store.close()
    assert summary.model_sha256 == reference.model_sha256
    assert decision_versions([e for e in all_events(cut_dir) if e.run_id == RUN]) == versions


def test_policy_commands_refuse_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    publish_versions(tmp_path)
    store, trainer = start(tmp_path)
    try:
        trainer.run_epoch()
        capsys.readouterr()
        assert esper("policy", "activate", "v9", "--run", RUN, data_dir=tmp_path) == 1
        assert capsys.readouterr().err.strip() == (
            "esper policy: unknown policy version 'v9'; `esper policy list` shows the published ones"
        )
        bad = publish(
            store, PolicyLibrary(DataDir(tmp_path)), Signer(Keyring.generate("k7")), initial_network(3)
        )
        assert esper("policy", "activate", update_of(bad).version, "--run", RUN, data_dir=tmp_path) == 1
        err = capsys.readouterr().err
        assert "key id 'k7' is not on the verifier's keyring" in err and err.count("\n") == 1
        artifact = DataDir(tmp_path).policy_artifact(update_of(bad).content_hash)
        good = publish(
            store,
            PolicyLibrary(DataDir(tmp_path)),
            Signer(keyring_for(DataDir(tmp_path))),
            initial_network(4),
        )
        DataDir(tmp_path).policy_artifact(update_of(good).content_hash).write_bytes(artifact.read_bytes())
        assert esper("policy", "activate", update_of(good).version, "--run", RUN, data_dir=tmp_path) == 1
        err = capsys.readouterr().err
        assert "has sha256" in err and err.count("\n") == 1
        assert esper("policy", "rollback", "--run", RUN, data_dir=tmp_path) == 1
        assert "no earlier good policy" in capsys.readouterr().err
        assert esper("policy", "activate", "v2", "--run", "nope", data_dir=tmp_path) == 1
        assert "no run 'nope'" in capsys.readouterr().err
        assert esper("policy", "list", "--json", data_dir=tmp_path) == 0
        listing = capsys.readouterr().out
        assert '"version": "v1"' in listing and f'"active_in": ["{RUN}"]' in listing
        assert esper("policy", "show", "v2", data_dir=tmp_path) == 0
        assert "signature ok" in capsys.readouterr().out
    finally:
        trainer.sink.close()
        store.close()
