"""Growth on real data, end to end: Tamiyo's heuristic grafts into cnn-lite on a small digits subset; every
graft and admission leaves the host's output bit-identical (the growth bench's own check), and a seed that
reaches FOSSILIZED is part of the model the run saves (its last checkpoint and its final hash)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from domains.tamiyo import HeuristicConfig
from domains.tamiyo.catalogue import heuristic_controller
from domains.tolaria.config import RunConfig
from domains.tolaria.hosts import HostSpec, build_host, count_parameters
from eventstore import open_store
from leyline import decode_payload, pb
from leyline.datadir import DataDir
from leyline.signing import Keyring, Signer
from ops.bench._growth_tasks import GraftCheck
from ops.compose import build_trainer
from tests.tolaria.helpers import PERMISSIVE, assert_seeds_saved_with_the_model

EPOCHS = 12
CONFIG = RunConfig(
    epochs=EPOCHS,
    seed=0,
    dataset="digits",
    dataset_options={"train_limit": 400, "split_seed": 0},
    controller="noop",
    checkpoint_every=1,
    hook_budget_ms=60_000.0,  # the mode must not depend on this machine's load
)
EAGER = HeuristicConfig(plateau_window=1, plateau_epsilon=1.0, germination_cooldown_epochs=1)


@pytest.mark.slow
def test_a_graft_is_exact_at_admission_and_a_fossilized_seed_is_saved_with_the_model(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    data_dir = DataDir(tmp_path)
    store = open_store(data_dir.log)
    try:
        keyring = Keyring.generate()
        trainer = build_trainer(CONFIG, "rgrow", store, data_dir, keyring=keyring, kasmina_config=PERMISSIVE)
        slots = {n: (s.kind, s.shape) for n, s in trainer.kasmina.slots.items()}
        trainer.controller = heuristic_controller("rgrow", Signer(keyring), slots, EAGER)
        check = GraftCheck(trainer.kasmina, trainer.model, trainer.splits.validation.inputs[:64])
        trainer.start()
        summary = trainer.run()
        events = list(store.read_all())
    finally:
        store.close()
    assert check.grafts >= 2 and check.exact == check.grafts  # each seed's graft and its admission

    fossilized = {}
    for envelope in events:
        payload = decode_payload(envelope)
        if isinstance(payload, pb.SeedGrafted):
            fossilized[payload.slot] = payload.parameters
        elif isinstance(payload, pb.SeedTransitioned) and payload.to_stage in (
            pb.SEED_STAGE_CULLED,
            pb.SEED_STAGE_TERMINATED,
        ):
            fossilized.pop(payload.slot, None)
    assert fossilized, "no seed reached FOSSILIZED"
    host = count_parameters(build_host("cnn-lite", HostSpec((1, 8, 8), 10)))
    assert summary.parameters == host + sum(fossilized.values())

    assert_seeds_saved_with_the_model(trainer, data_dir, events, fossilized, EPOCHS, summary.model_sha256)
