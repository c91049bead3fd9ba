"""`esper blueprints approve`: the event, its refusals, the catalogue projection and Tamiyo's catalogue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domains.karn.approval import approved_in
from domains.tamiyo.catalogue import karn_descriptors
from domains.tamiyo.config import HeuristicConfig
from domains.tamiyo.policy import HeuristicPolicy
from eventstore.file import FileStore
from leyline import new_envelope, pb
from leyline.datadir import DataDir
from ops.cli import main
from ops.compose import run_approvals
from tests.tamiyo.scripted import observation


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_approve_records_an_event_and_refuses_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = ["--data-dir", str(tmp_path)]
    code, out, _ = run(capsys, "blueprints", "approve", "bp036", "--reason", "reviewed", "--json", *data)
    assert code == 0 and json.loads(out)["blueprint_id"] == "BP036"
    for blueprint_id, words in (
        ("BP036", "already approved"),
        ("BP999", "unknown blueprint"),
        ("BP045", "quarantine-only"),
        ("BP001", "needs no approval"),
    ):
        code, out, err = run(capsys, "blueprints", "approve", blueprint_id, *data)
        assert code == 1 and out == "" and words in err and len(err.strip().splitlines()) == 1

    store = FileStore(DataDir(tmp_path).log)
    try:
        assert approved_in(store) == {"BP036"}
        events = [e for e in store.read_stream("blueprint-BP036") if e.event_type == "BlueprintApproved"]
        assert len(events) == 1
    finally:
        store.close()
    code, out, _ = run(capsys, "blueprints", "list", "--json", *data)
    live = {row["blueprint_id"]: row["approved"] for row in json.loads(out)}
    assert live["BP036"] and not live["BP037"] and live["BP001"] and not live["BP045"]

    code, out, _ = run(capsys, "audit", "blueprint", "BP036", "--json", *data)
    assert code == 0 and json.loads(out)["blueprint"]["approved"] is True
    code, out, _ = run(capsys, "audit", "blueprint", "BP037", "--json", *data)
    assert json.loads(out)["blueprint"]["approved"] is False


def test_tamiyo_may_choose_an_approved_blueprint_and_a_run_sees_approvals_made_before_it(
    tmp_path: Path,
) -> None:
    store = FileStore(tmp_path / "log")
    try:
        policy = HeuristicPolicy(HeuristicConfig())  # the calm cap, 0.5, below BP036's risk 0.6

        def eligible(approved: frozenset[str]) -> set[str]:
            seen = observation(0, 0.4, catalogue=karn_descriptors(approved))
            return {d.blueprint_id for d in policy.eligible_blueprints(seen, 0, 0, False)}

        assert "BP036" not in eligible(approved_in(store))
        store.append(
            [new_envelope("BlueprintApproved", "blueprint-BP036", pb.BlueprintApproved(blueprint_id="BP036"))]
        )
        assert "BP036" in eligible(approved_in(store)) and "BP037" not in eligible(approved_in(store))
        at_risk = observation(0, 0.4, catalogue=karn_descriptors(approved_in(store)))
        assert "BP036" not in {d.blueprint_id for d in policy.eligible_blueprints(at_risk, 0, 1, False)}

        run_started = new_envelope("RunStarted", "run-r1", pb.RunStarted(run_id="r1"), run_id="r1")
        store.append([run_started])
        store.append(
            [new_envelope("BlueprintApproved", "blueprint-BP037", pb.BlueprintApproved(blueprint_id="BP037"))]
        )
        assert run_approvals(store, "r1") == {"BP036"}  # BP037 came after r1 started
        assert run_approvals(store, "r2") == {"BP036", "BP037"}  # a run not started yet sees both
    finally:
        store.close()
