"""`esper audit` in text: a blueprint's lifecycle endings beside its field reports, a command's reason and
risk inputs, a seed's gradient window, and the field reports' seed fields (contribution, stage, why)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domains.karn.registration import register_catalogue
from eventstore import open_store
from leyline import new_envelope, pb, stream_name
from leyline.datadir import DataDir
from leyline.signing import Keyring, Signer
from ops.cli import main

RUN = "rlife"


def transition(slot: int, to: int, epoch: int, reason: str, blueprint: str = "BP009") -> pb.EventEnvelope:
    payload = pb.SeedTransitioned(
        slot=slot,
        seed_id=slot + 1,
        to_stage=to,
        reason=reason,
        epoch=epoch,
        blueprint_id=blueprint,  # type: ignore[arg-type]
    )
    return new_envelope(
        "SeedTransitioned", stream_name("seed", f"{RUN}.{slot}"), payload, run_id=RUN, epoch=epoch
    )


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DataDir:
    for name in ("ESPER_SIGNING_KEYS", "ESPER_SIGNING_KEY_FILE", "ESPER_STORE_URL", "ESPER_DB_URL"):
        monkeypatch.delenv(name, raising=False)
    data_dir = DataDir(tmp_path).create()
    keyring = Keyring.load_or_create(data_dir.keys)
    decision = pb.DecisionMade(
        policy_name="heuristic",
        policy_version="1.0",
        inputs_summary={"risk_raw": 1.0, "hook_ratio": 0.25, "validation_loss": 0.4},
        risk_level=pb.RISK_LEVEL_YELLOW,
        command_id="cgerm",
        action="germinate",
        reason="validation loss plateaued over 3 epochs; slot 0 has the most headroom",
        epoch=5,
    )
    command = pb.AdaptationCommand(
        command_id="cgerm",
        command_type=pb.COMMAND_TYPE_SEED,
        target_slot=0,
        issued_by="tamiyo",
        seed_operation=pb.SeedOperationCommand(operation=pb.SEED_OP_GERMINATE, blueprint_id="BP009"),
    )
    issued = new_envelope(
        "AdaptationCommandIssued",
        stream_name("command", "cgerm"),
        pb.AdaptationCommandIssued(command=command),
        run_id=RUN,
        epoch=5,
    )
    gradients = pb.SeedGradientsMeasured(
        slot=0,
        seed_id=1,
        epoch=7,
        stage=pb.SEED_STAGE_TRAINING,
        epochs_since_germination=2,
        steps=20,
        seed_gradient_norm=2.0,
        host_gradient_norm=0.5,
        seed_parameters=400,
        host_parameters=625,
        seed_norm_per_parameter=0.1,
        host_norm_per_parameter=0.02,
    )
    report = pb.FieldReport(
        report_id="fr-cgerm",
        command_id="cgerm",
        run_id=RUN,
        slot=0,
        seed_id=1,
        blueprint_id="BP009",
        outcome=pb.FIELD_REPORT_OUTCOME_ABORTED,
        start_epoch=5,
        end_epoch=12,
        metrics={"contribution": -0.0123},
        seed_stage=pb.SEED_STAGE_EMBARGOED,
        seed_reason="G4 failed: contribution -0.0123 < 0",
    )
    store = open_store(data_dir.log)
    register_catalogue(store)
    store.append(
        [
            new_envelope("DecisionMade", stream_name("decision", RUN), decision, run_id=RUN, epoch=5),
            Signer(keyring).sign(issued),
            transition(0, pb.SEED_STAGE_GERMINATED, 5, "germinate command"),
            new_envelope("SeedGradientsMeasured", stream_name("seed", f"{RUN}.0"), gradients, run_id=RUN),
            transition(0, pb.SEED_STAGE_CULLED, 12, "G4 failed: contribution -0.0123 < 0"),
            transition(1, pb.SEED_STAGE_FOSSILIZED, 20, "G4 passed"),
            transition(2, pb.SEED_STAGE_TERMINATED, 30, "run ended"),
            new_envelope(
                "FieldReportIssued", stream_name("report", RUN), pb.FieldReportIssued(report=report)
            ),
        ]
    )
    store.close()
    return data_dir


def audit(data_dir: DataDir, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["audit", *argv, "--data-dir", str(data_dir.root)]) == 0
    return capsys.readouterr().out


def test_blueprint_shows_lifecycle_endings_beside_field_report_outcomes(
    data_dir: DataDir, capsys: pytest.CaptureFixture[str]
) -> None:
    report = json.loads(audit(data_dir, capsys, "blueprint", "BP009", "--json"))
    assert report["lifecycle_outcomes"] == {
        "CULLED": {"G4 failed": 1},
        "FOSSILIZED": {"G4 passed": 1},
        "TERMINATED": {"run ended": 1},
    }
    assert report["field_report_outcomes"] == {"ABORTED": 1}
    (row,) = report["field_reports"]
    assert row["seed_stage"] == "EMBARGOED" and row["seed_reason"].startswith("G4 failed")
    text = audit(data_dir, capsys, "blueprint", "BP009")
    assert "lifecycle outcomes: CULLED 1 (G4 failed 1); FOSSILIZED 1 (G4 passed 1); TERMINATED 1" in text
    assert "field report outcomes: ABORTED: 1" in text
    assert "G4 failed: contribution -0.0123 < 0" in text and "-0.0123" in text and "EMBARGOED" in text


def test_command_prints_the_decision_reason_and_risk_inputs(
    data_dir: DataDir, capsys: pytest.CaptureFixture[str]
) -> None:
    text = audit(data_dir, capsys, "command", "cgerm")
    assert "reason: validation loss plateaued over 3 epochs; slot 0 has the most headroom" in text
    assert "risk inputs: hook_ratio 0.25, risk_raw 1, validation_loss 0.4" in text
    assert "EMBARGOED" in text and "-0.0123" in text  # the field report's seed fields


def test_seed_shows_its_gradient_window(data_dir: DataDir, capsys: pytest.CaptureFixture[str]) -> None:
    report = json.loads(audit(data_dir, capsys, "seed", f"{RUN}.0", "--json"))
    (row,) = report["gradients"]
    assert row["epoch"] == 7 and row["seed_to_host_per_parameter"] == pytest.approx(5.0)
    assert all(h["event_type"] != "SeedGradientsMeasured" for h in report["history"])
    assert report["state"]["stage"] == "CULLED"
    text = audit(data_dir, capsys, "seed", f"{RUN}.0")
    assert "gradient window" in text and "TRAINING" in text
