"""The read models' contents for known event sequences: rollbacks, retention, catalogue, policies, alerts."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message
from sqlalchemy import Engine, select

from leyline import new_envelope, pb
from ops.bench._workload import Simulator
from projections import apply_batch, build_projections, schema
from projections.audit import audit_run, audit_seed
from tests.projections.helpers import fresh_sqlite

HOUR_NS = 3600 * 10**9


class Log:
    """Hand-written events with consecutive positions."""

    def __init__(self) -> None:
        self.events: list[pb.EventEnvelope] = []

    def add(self, event_type: str, stream: str, payload: Message, **options: Any) -> pb.EventEnvelope:
        envelope = new_envelope(event_type, stream, payload, **options)
        envelope.global_position = len(self.events) + 1
        self.events.append(envelope)
        return envelope


def rows(engine: Engine, table: Any, *order: Any) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(select(table).order_by(*order))]


def test_rollback_shows_the_run_as_of_the_target_and_keeps_superseded_events(tmp_path: Path) -> None:
    simulator = Simulator(seed=11)
    events: list[pb.EventEnvelope] = []
    for envelope in simulator.run(120, run_id="r1", rollback_every=6):
        events.append(envelope)
        if envelope.event_type == "RollbackCompleted" and events[-3].event_type != "CheckpointCommitted":
            rollback = pb.RollbackCompleted()
            rollback.ParseFromString(envelope.payload)
            if rollback.superseded_to > rollback.superseded_from + 10:
                break
    else:
        pytest.fail("the simulated run never rolled back over a long enough range")
    target = rollback.target_position
    rolled_back = fresh_sqlite(tmp_path, "rolled_back.sqlite")
    apply_batch(rolled_back, events)
    as_of_target = fresh_sqlite(tmp_path, "as_of_target.sqlite")
    apply_batch(as_of_target, [e for e in events if e.global_position <= target])

    def seed_state(engine: Engine) -> list[tuple[Any, ...]]:
        return [
            (
                s["stream"],
                s["stage"],
                s["blueprint_id"],
                s["artifact_hash"],
                s["command_id"],
                s["epoch"],
                s["violations"],
            )
            for s in rows(engine, schema.seeds, schema.seeds.c.stream)
        ]

    assert seed_state(rolled_back) == seed_state(as_of_target)
    standing = [
        e["position"] for e in rows(rolled_back, schema.run_epochs, "position") if e["superseded_at"] is None
    ]
    assert standing == [e["position"] for e in rows(as_of_target, schema.run_epochs, "position")]
    superseded = [
        e for e in rows(rolled_back, schema.run_epochs, "position") if e["superseded_at"] is not None
    ]
    assert superseded, "the events after the checkpoint stay, marked"
    assert {e["superseded_at"] for e in superseded} == {events[-1].global_position}
    assert all(rollback.superseded_from <= e["position"] <= rollback.superseded_to for e in superseded)
    run = rows(rolled_back, schema.runs, "run_id")[0]
    assert run["last_epoch"] == rollback.target_epoch
    assert run["rollbacks"] == 1

    report = audit_run(rolled_back, "r1")
    assert [e["superseded"] for e in report["epochs"]].count(True) == len(superseded)
    before = audit_run(rolled_back, "r1", as_of=rollback.superseded_to)
    assert not any(e["superseded"] for e in before["epochs"])
    assert before["run"]["last_epoch"] == max(e["epoch"] for e in before["epochs"])


def test_time_travel_of_a_seed(tmp_path: Path) -> None:
    log = Log()
    stream = "seed-r1.0"
    log.add("RunStarted", "run-r1", pb.RunStarted(run_id="r1"), run_id="r1")
    stages = [pb.SEED_STAGE_DORMANT, pb.SEED_STAGE_GERMINATED, pb.SEED_STAGE_TRAINING, pb.SEED_STAGE_BLENDING]
    for epoch, (old, new) in enumerate(itertools.pairwise(stages), start=1):
        transition = pb.SeedTransitioned(slot=0, seed_id=1, from_stage=old, to_stage=new, epoch=epoch)
        transition.gates.add(gate=f"G{epoch - 1}", passed=True, reason="ok")
        log.add(
            "EpochCompleted",
            "run-r1",
            pb.EpochCompleted(state=pb.SystemStatePacket(epoch=epoch)),
            run_id="r1",
        )
        log.add("SeedTransitioned", stream, transition, run_id="r1", epoch=epoch)
    engine = fresh_sqlite(tmp_path)
    apply_batch(engine, log.events)
    assert audit_seed(engine, "r1.0")["state"]["stage"] == "BLENDING"
    assert audit_seed(engine, "r1.0", epoch=2)["state"]["stage"] == "GERMINATED"
    at_epoch_2 = audit_seed(engine, "r1.0", epoch=2)
    assert at_epoch_2["as_of"] == 4
    assert [h["to_stage"] for h in at_epoch_2["history"]] == ["GERMINATED"]
    assert audit_seed(engine, "r1.0", as_of=1)["history"] == []
    assert audit_seed(engine, "seed-r1.0")["history"][-1]["gates"] == [
        {"gate": "G2", "passed": True, "reason": "ok", "measured": {}}
    ]


def test_field_reports_expire_on_the_log_clock(tmp_path: Path) -> None:
    log = Log()
    start = 1_790_000_000 * 10**9
    for number, hours in enumerate([0, 1, 30]):
        report = pb.FieldReport(report_id=f"fr{number}", run_id="r1", slot=0, command_id=f"c{number}")
        log.add(
            "FieldReportIssued",
            "report-r1",
            pb.FieldReportIssued(report=report),
            occurred_at_ns=start + hours * HOUR_NS,
        )
    engine = fresh_sqlite(tmp_path)
    apply_batch(engine, log.events[:2])
    assert [r["report_id"] for r in rows(engine, schema.field_reports, "position")] == ["fr0", "fr1"]
    apply_batch(engine, log.events[2:])
    assert [r["report_id"] for r in rows(engine, schema.field_reports, "position")] == ["fr2"]
    longer = fresh_sqlite(tmp_path, "longer.sqlite")
    apply_batch(longer, log.events, projections=build_projections(field_report_retention_s=48 * 3600))
    assert len(rows(longer, schema.field_reports, "position")) == 3


def test_checkpoint_never_moves_backwards(tmp_path: Path) -> None:
    events = list(Simulator(seed=3).run(5, run_id="r1"))
    engine = fresh_sqlite(tmp_path)
    apply_batch(engine, events)
    head = events[-1].global_position
    assert apply_batch(engine, [], upto=3) == dict.fromkeys(apply_batch(engine, []), 0)
    assert {c["position"] for c in rows(engine, schema.projection_checkpoints, "name")} == {head}


def test_compile_status_follows_the_job(tmp_path: Path) -> None:
    log = Log()
    descriptor = pb.BlueprintDescriptor(
        blueprint_id="BP009", name="residual_block", tier=pb.BLUEPRINT_TIER_SAFE
    )
    log.add("BlueprintRegistered", "blueprint-BP009", pb.BlueprintRegistered(descriptor=descriptor))
    log.add(
        "CompileJobQueued",
        "compile-j1",
        pb.CompileJobQueued(job_id="j1", blueprint_id="BP009", max_attempts=3),
    )
    engine = fresh_sqlite(tmp_path)

    def status() -> tuple[Any, ...]:
        blueprint = rows(engine, schema.blueprints, "blueprint_id")[0]
        job = rows(engine, schema.compile_jobs, "job_id")[0]
        return blueprint["compile_status"], job["status"], job["attempts"], blueprint["artifact_hash"]

    apply_batch(engine, log.events)
    assert status() == ("queued", "queued", 0, None)
    log.add("CompileJobStarted", "compile-j1", pb.CompileJobStarted(job_id="j1", attempt=1))
    log.add(
        "CompileJobFailed",
        "compile-j1",
        pb.CompileJobFailed(job_id="j1", attempt=1, error="boom", will_retry=True),
    )
    apply_batch(engine, log.events)
    assert status() == ("retrying", "retrying", 1, None)
    log.add("CompileJobStarted", "compile-j1", pb.CompileJobStarted(job_id="j1", attempt=2))
    log.add(
        "CompileJobSucceeded",
        "compile-j1",
        pb.CompileJobSucceeded(job_id="j1", attempt=2, artifact_hash="ab"),
    )
    log.add(
        "ArtifactStored",
        "artifact-ab",
        pb.ArtifactStored(artifact_hash="ab", blueprint_id="BP009", job_id="j1"),
    )
    apply_batch(engine, log.events)
    assert status() == ("succeeded", "succeeded", 2, "ab")
    log.add(
        "ArtifactCorrupted",
        "artifact-ab",
        pb.ArtifactCorrupted(artifact_hash="ab", blueprint_id="BP009", actual_hash="cd"),
    )
    apply_batch(engine, log.events)
    assert status()[0] == "corrupted"
    assert rows(engine, schema.artifacts, "artifact_hash")[0]["status"] == "corrupted"
    assert [e["event_type"] for e in rows(engine, schema.compile_events, "position")] == [
        "CompileJobQueued",
        "CompileJobStarted",
        "CompileJobFailed",
        "CompileJobStarted",
        "CompileJobSucceeded",
    ]


def test_policy_activation_and_rollback(tmp_path: Path) -> None:
    log = Log()
    for version in ("v1", "v2"):
        update = pb.PolicyUpdate(version=version, content_hash=f"h{version}")
        log.add("PolicyTrained", f"policy-{version}", pb.PolicyTrained(update=update, steps=10))
        log.add("PolicyValidated", f"policy-{version}", pb.PolicyValidation(version=version, passed=True))
        log.add("PolicyPublished", f"policy-{version}", pb.PolicyPublished(update=update))
        log.add("PolicyActivated", f"policy-{version}", pb.PolicyActivation(version=version))
    log.add(
        "PolicyRolledBack",
        "policy-v1",
        pb.PolicyActivation(version="v1", previous_version="v2", reason="failed"),
    )
    engine = fresh_sqlite(tmp_path)
    apply_batch(engine, log.events)
    policies = {
        p["version"]: (p["status"], p["active"], p["content_hash"])
        for p in rows(engine, schema.policies, "version")
    }
    assert policies == {"v1": ("active", True, "hv1"), "v2": ("rolled_back", False, "hv2")}


def test_alert_fires_and_resolves(tmp_path: Path) -> None:
    log = Log()
    alert = pb.Alert(name="oona_queue_depth", severity="warning", value=4100)
    log.add("AlertFired", "alert-oona_queue_depth", alert)
    engine = fresh_sqlite(tmp_path)
    apply_batch(engine, log.events)
    assert rows(engine, schema.alerts, "name")[0]["state"] == "firing"
    log.add("AlertResolved", "alert-oona_queue_depth", alert)
    apply_batch(engine, log.events)
    current = rows(engine, schema.alerts, "name")[0]
    assert (current["state"], current["fired_position"], current["resolved_position"]) == ("resolved", 1, 2)
    assert len(rows(engine, schema.alert_events, "position")) == 2
