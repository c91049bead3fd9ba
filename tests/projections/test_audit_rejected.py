"""`esper audit run` lists the commands the run rejected, a seed's and the others, each with its reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eventstore import open_store
from leyline import new_envelope, pb, stream_name
from leyline.datadir import DataDir
from ops.cli import main

RUN = "rrej"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DataDir:
    for name in ("ESPER_STORE_URL", "ESPER_DB_URL"):
        monkeypatch.delenv(name, raising=False)
    data_dir = DataDir(tmp_path).create()
    germination = pb.CommandRejected(
        command_id="cgerm",
        slot=1,
        reason="the seed's verdict would come after the run's end",
        code="gate_not_met",
    )
    rollback = pb.CommandRejected(
        command_id="crollback", reason="no checkpoint at epoch 2", code="no_checkpoint"
    )
    refused = pb.CommandRejected(command_id="control-1", reason="not signed", code="bad_signature")
    store = open_store(data_dir.log)
    store.append(
        [
            new_envelope("RunStarted", stream_name("run", RUN), pb.RunStarted(run_id=RUN), run_id=RUN),
            new_envelope(
                "CommandRejected", stream_name("seed", f"{RUN}.1"), germination, run_id=RUN, epoch=26
            ),
            new_envelope(
                "CommandRejected", stream_name("command", "crollback"), rollback, run_id=RUN, epoch=27
            ),
            new_envelope("CommandRejected", stream_name("run", RUN), refused, run_id=RUN, epoch=28),
        ]
    )
    store.close()
    return data_dir


def audit_run(data_dir: DataDir, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["audit", "run", RUN, *argv, "--data-dir", str(data_dir.root)]) == 0
    return capsys.readouterr().out


def test_audit_run_lists_every_rejected_command_with_its_reason(
    data_dir: DataDir, capsys: pytest.CaptureFixture[str]
) -> None:
    report = json.loads(audit_run(data_dir, capsys, "--json"))
    rejected = [(r["epoch"], r["slot"], r["command_id"], r["code"], r["reason"]) for r in report["rejected"]]
    assert rejected == [
        (26, 1, "cgerm", "gate_not_met", "the seed's verdict would come after the run's end"),
        (None, None, None, "no_checkpoint", "no checkpoint at epoch 2"),
        (None, None, None, "bad_signature", "not signed"),
    ]
    assert report["rollbacks"] == []  # a refusal is listed once, with the rejected commands
    text = audit_run(data_dir, capsys)
    section = text.split("\nrejected commands\n", 1)[1].split("\nseeds\n", 1)[0]
    for reason in (
        "the seed's verdict would come after the run's end",
        "no checkpoint at epoch 2",
        "not signed",
    ):
        assert reason in section
