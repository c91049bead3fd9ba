"""The run's learning-rate schedule: recorded in RunStarted, followed by the host's group each epoch, and a
run cut mid-seed resumes bit-identically (the rates are a function of the recorded config and the epoch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domains.tolaria.config import ConfigError, build_config
from eventstore import open_store
from leyline import pb
from leyline.datadir import DataDir
from leyline.schedule import lr_factor
from ops.compose import new_run, resume
from tests.tolaria.helpers import SMALL, payloads, run_events
from tests.tolaria.test_trainer import GROWING, train

COSINE = {**GROWING, "lr_schedule": "cosine"}


def test_an_unknown_schedule_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown lr_schedule 'linear'; use one of constant, cosine"):
        build_config({"lr_schedule": "linear"})


def test_a_cosine_run_records_its_schedule_and_resumes_bit_identically_mid_seed(tmp_path: Path) -> None:
    reference, events = train(tmp_path / "ref", "rcos", **COSINE)
    started = payloads(events, "RunStarted")[0]
    assert json.loads(started.config_json)["lr_schedule"] == "cosine"
    packets = [p.state for p in payloads(events, "EpochCompleted")]
    epochs = int(COSINE["epochs"])  # type: ignore[call-overload]
    assert [p.metrics["lr"] for p in packets] == [
        pytest.approx(0.01 * lr_factor("cosine", e, 0, epochs)) for e in range(1, epochs + 1)
    ]
    alive = [p.epoch for p in packets if any(s.stage != pb.SEED_STAGE_DORMANT for s in p.seeds)]
    assert alive, "the controller grew nothing; the test needs a seed alive at the cut"
    data_dir = DataDir(tmp_path / "cut")
    store = open_store(data_dir.log)
    trainer = new_run(store, data_dir, build_config({**SMALL, **COSINE}), "rcos")
    for _ in range(alive[0] + 1):
        trainer.run_epoch()
    trainer.sink.close()
    store.close()
    store = open_store(data_dir.log)
    try:
        resumed = resume(store, data_dir, "rcos")
        assert resumed.config.lr_schedule == "cosine"
        assert resumed.kasmina.config.lr_schedule == "cosine"
        summary = resumed.run()
    finally:
        store.close()
    assert summary.model_sha256 == reference
    assert len(payloads(run_events(tmp_path / "cut", "rcos"), "RunStarted")) == 2
