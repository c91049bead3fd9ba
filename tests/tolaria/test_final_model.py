"""The run summary and RunCompleted describe the model the run ends with: torn-down seeds are not in it."""

from __future__ import annotations

from pathlib import Path

from domains.tolaria.config import build_config
from domains.tolaria.hosts import HostSpec, build_host, count_parameters
from eventstore import open_store
from leyline import decode_payload, pb
from leyline.datadir import DataDir
from ops.compose import new_run
from tests.tolaria.helpers import SMALL
from tests.tolaria.test_trainer import GROWING


def test_the_summary_counts_only_what_the_final_model_holds(tmp_path: Path) -> None:
    config = build_config({**SMALL, **GROWING, "epochs": 16})  # its third seed is PROBATIONARY at epoch 16
    store = open_store(DataDir(tmp_path).log)
    try:
        summary = new_run(store, DataDir(tmp_path), config, "rfinal").run()
        events = [e for e in store.read_all() if e.run_id == "rfinal" or e.stream.startswith("seed-rfinal.")]
    finally:
        store.close()
    added: dict[tuple[str, int], int] = {}
    last: dict[tuple[str, int], int] = {}
    for envelope in events:
        payload = decode_payload(envelope)
        if isinstance(payload, pb.SeedGrafted):
            added[(envelope.stream, payload.seed_id)] = payload.parameters
        elif isinstance(payload, pb.SeedTransitioned) and payload.seed_id:
            last[(envelope.stream, payload.seed_id)] = payload.to_stage
    assert pb.SEED_STAGE_TERMINATED in last.values(), "this run ends with a seed in flight"
    host = count_parameters(build_host("cnn-lite", HostSpec((1, 8, 8), 10)))
    kept = sum(added[seed] for seed, stage in last.items() if stage == pb.SEED_STAGE_FOSSILIZED)
    assert summary.parameters == host + kept
    completed = next(decode_payload(e) for e in events if e.event_type == "RunCompleted")
    assert isinstance(completed, pb.RunCompleted)
    assert (completed.parameters, completed.model_sha256) == (summary.parameters, summary.model_sha256)
