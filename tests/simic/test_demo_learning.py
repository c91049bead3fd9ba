"""`esper demo learning` end to end on the tiny budget: a round of episodes, the gate on held-out tasks
(5 seeds, chaos checks), the release, and a live run whose decisions name the release after it
hot-reloads it at an epoch boundary; the report and the PNG are written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domains.tamiyo.policy_store import published_versions, update_of
from eventstore import open_store
from leyline import decode_payload, pb
from leyline.datadir import DataDir
from ops.cli import main


@pytest.mark.slow
def test_the_demo_trains_gates_publishes_and_hot_reloads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    argv = ["demo", "learning", "--budget", "tiny", "--data-dir", str(tmp_path / "d"), "--out", str(out)]
    assert main([*argv, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["passed"] and document["release"] == "demo-v1"
    assert document["live"]["versions_after"] == ["demo-v1"]
    assert (out / "learning-curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "learning-report.md").read_text(encoding="utf-8")
    assert "| before (demo-init) |" in report and "published as `demo-v1`" in report

    store = open_store(DataDir(tmp_path / "d").log, create=False)
    try:
        versions = published_versions(store)
        events = list(store.read_all())
    finally:
        store.close()
    release = update_of(versions["demo-v1"])
    assert release.parent_version == "demo-r0"
    assert "demo-r0" not in versions  # the candidate itself is never published
    [trained] = [p for e in events if isinstance(p := decode_payload(e), pb.PolicyTrained)]
    assert trained.update.version == "demo-r0" and release.content_hash == trained.update.content_hash
    [validated] = [decode_payload(e) for e in events if e.event_type == "PolicyValidated"]
    assert isinstance(validated, pb.PolicyValidation) and validated.version == "demo-r0"
    assert validated.checks["heuristic_seeds"] >= 5 and "ope_ess" in validated.checks
    live = [(e.event_type, decode_payload(e)) for e in events if e.run_id == "demo-live"]
    activations = [
        p
        for t, p in live
        if t == "PolicyActivated" and isinstance(p, pb.PolicyActivation) and p.version == "demo-v1"
    ]
    assert len(activations) == 1 and activations[0].previous_version == "demo-init"
    at = activations[0].epoch
    decisions = [p for _, p in live if isinstance(p, pb.DecisionMade)]
    assert {d.policy_version for d in decisions if d.epoch < at} == {"demo-init"}
    assert {d.policy_version for d in decisions if d.epoch >= at} == {"demo-v1"}
