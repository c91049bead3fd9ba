"""`esper audit command` says whether a command was verified; an unverified one is never shown as issued."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eventstore import open_store
from leyline import new_envelope, pb, stream_name
from leyline.datadir import DataDir
from leyline.signing import Keyring, Signer
from ops.cli import main

RUN = "raudit"


def command_envelope(command_id: str, keyring: Keyring | None) -> pb.EventEnvelope:
    command = pb.AdaptationCommand(
        command_id=command_id,
        command_type=pb.COMMAND_TYPE_SEED,
        target_slot=1,
        issued_by="tamiyo",
        seed_operation=pb.SeedOperationCommand(operation=pb.SEED_OP_GERMINATE, blueprint_id="BP001"),
    )
    envelope = new_envelope(
        "AdaptationCommandIssued",
        stream_name("command", command_id),
        pb.AdaptationCommandIssued(command=command),
        run_id=RUN,
        epoch=3,
        event_id=command_id,
    )
    return Signer(keyring).sign(envelope) if keyring is not None else envelope


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DataDir:
    """A log with one command signed by the data directory's keyring, one by a forger, one unsigned."""
    for name in ("ESPER_SIGNING_KEYS", "ESPER_SIGNING_KEY_FILE", "ESPER_STORE_URL", "ESPER_DB_URL"):
        monkeypatch.delenv(name, raising=False)
    data_dir = DataDir(tmp_path).create()
    ours = Keyring.load_or_create(data_dir.keys)
    store = open_store(data_dir.log)
    store.append([command_envelope("cgood", ours)])
    store.append([command_envelope("cforged", Keyring.generate("k1"))])
    store.append([command_envelope("cunsigned", None)])
    store.close()
    return data_dir


def audit(data_dir: DataDir, command_id: str, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    assert main(["audit", "command", command_id, "--data-dir", str(data_dir.root), *extra]) == 0
    return capsys.readouterr().out


def test_a_verified_command_is_shown_issued(data_dir: DataDir, capsys: pytest.CaptureFixture[str]) -> None:
    out = audit(data_dir, "cgood", capsys)
    assert "issued at position" in out and "(verified, key k1)" in out
    report = json.loads(audit(data_dir, "cgood", capsys, "--json"))
    assert report["command"]["verification"]["status"] == "verified"


@pytest.mark.parametrize(
    ("command_id", "reason"), [("cforged", "bad_signature"), ("cunsigned", "not signed")]
)
def test_an_unverified_command_is_never_shown_issued(
    data_dir: DataDir, capsys: pytest.CaptureFixture[str], command_id: str, reason: str
) -> None:
    out = audit(data_dir, command_id, capsys)
    assert "issued" not in out
    assert "NOT VERIFIED (unverified:" in out and reason in out
    report = json.loads(audit(data_dir, command_id, capsys, "--json"))
    assert report["command"]["verification"]["status"] == "unverified"


def test_without_a_key_the_answer_is_unknown_not_issued(
    data_dir: DataDir, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir.keys.unlink()
    out = audit(data_dir, "cgood", capsys)
    assert "issued" not in out and "NOT VERIFIED (unknown: no signing key here" in out
