"""The default `esper run` (digits, default config, Tamiyo) shows a whole seed lifecycle; its summary lists
each graft. Stages are asserted, never accuracy."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from domains.tolaria.config import RunConfig
from domains.tolaria.report import graft_summaries
from eventstore import open_store
from leyline import new_envelope, pb
from leyline.datadir import DataDir
from ops.compose import new_run


def test_graft_summaries_follow_each_seed_to_where_it_ended() -> None:
    def epoch(n: int, accuracy: float) -> pb.EventEnvelope:
        state = pb.SystemStatePacket(epoch=n, validation_accuracy=accuracy)
        return new_envelope("EpochCompleted", "run-r", pb.EpochCompleted(state=state), epoch=n)

    def seed(payload: object, n: int) -> pb.EventEnvelope:
        return new_envelope(type(payload).__name__, "seed-r.0", payload, epoch=n)

    events = [
        epoch(3, 0.5),
        seed(pb.SeedGrafted(slot=0, seed_id=1, blueprint_id="BP005", parameters=148), 3),
        seed(pb.SeedTransitioned(slot=0, seed_id=1, to_stage=pb.SEED_STAGE_TRAINING, epoch=4), 4),
        epoch(6, 0.7),
        seed(pb.SeedTransitioned(slot=0, seed_id=1, to_stage=pb.SEED_STAGE_CULLED, epoch=6, reason="G2"), 6),
        seed(pb.SeedTransitioned(slot=0, seed_id=1, to_stage=pb.SEED_STAGE_EMBARGOED, epoch=6), 6),
    ]
    (graft,) = graft_summaries(events)
    assert (graft.slot, graft.blueprint_id, graft.parameters, graft.epoch) == (0, "BP005", 148, 3)
    assert (graft.stage, graft.end_epoch, graft.reason) == ("CULLED", 6, "G2")
    assert (graft.accuracy_before, graft.accuracy_after) == (0.5, pytest.approx(0.7))


@pytest.mark.slow
def test_the_default_run_takes_a_seed_to_a_terminal_stage(tmp_path: Path) -> None:
    store = open_store(DataDir(tmp_path).log)
    try:
        summary = new_run(store, DataDir(tmp_path), RunConfig(), "rdefault").run()
        measured = [e for e in store.read_all() if e.event_type == "SeedGradientsMeasured"]
    finally:
        store.close()
    assert measured, "the gradient window recorded nothing"
    ended = [graft for graft in summary.grafts if graft.stage in ("FOSSILIZED", "CULLED")]
    assert ended, f"no graft reached FOSSILIZED or CULLED: {summary.grafts}"
    for graft in summary.grafts:
        assert graft.blueprint_id and graft.parameters > 0 and not math.isnan(graft.accuracy_before)
        assert graft.reason  # every ending is recorded with its reason
        if graft.stage == "TERMINATED":  # cut short by the run's end: says what it still needed
            assert graft.reason.startswith("run ended with the seed unfinished"), graft.reason
