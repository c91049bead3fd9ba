"""A widening graft end to end (cnn-lite's slot 3: a seed reads the image and adds to the logits through a
zero-initialised consumer): the host's output is bit-identical when it is grafted and admitted, a run
cut while it trains resumes bit-identically, and once FOSSILIZED it is part of the model the run saves."""

from __future__ import annotations

from pathlib import Path

import torch

from domains.kasmina import WideningSlot
from domains.tolaria.config import RunConfig
from domains.tolaria.hosts import HostSpec, build_host, count_parameters
from domains.tolaria.trainer import Trainer
from eventstore import EventStore, open_store
from leyline import decode_payload, new_envelope, pb
from leyline.controller import ControllerContext, ControllerOutput, NoOpController
from leyline.datadir import DataDir
from leyline.signing import Keyring, Signer
from ops.bench._growth_tasks import GraftCheck
from ops.compose import build_trainer, resume
from tests.tolaria.helpers import PERMISSIVE, assert_seeds_saved_with_the_model

WIDEN_SLOT = 3
EPOCHS = 9
CONFIG = RunConfig(
    epochs=EPOCHS,
    seed=0,
    dataset="digits",
    dataset_options={"train_limit": 300, "split_seed": 0},
    controller="noop",
    checkpoint_every=1,
)


class WidenAt(NoOpController):
    """Orders one signed germination of BP051 (widen_conv) at the widening slot, at the given epoch."""

    def __init__(self, signer: Signer, run_id: str, at: int) -> None:
        self.signer, self.run_id, self.at = signer, run_id, at

    def decide(self, packet: pb.SystemStatePacket, context: ControllerContext) -> ControllerOutput:
        if packet.epoch != self.at:
            return ControllerOutput()
        command = pb.AdaptationCommand(
            command_id=f"w{packet.epoch}",
            command_type=pb.COMMAND_TYPE_SEED,
            target_slot=WIDEN_SLOT,
            target_seed_id=1,
            issued_by="test-controller",
        )
        command.seed_operation.operation = pb.SEED_OP_GERMINATE
        command.seed_operation.blueprint_id = "BP051"
        command.seed_operation.alpha_ramp_epochs = 1
        command.seed_operation.parameters["channels"] = 4
        issued = pb.AdaptationCommandIssued(command=command)
        envelope = new_envelope(
            "AdaptationCommandIssued", f"command-{command.command_id}", issued, run_id=self.run_id
        )
        return ControllerOutput(command=self.signer.sign(envelope))


def stages(events: list[pb.EventEnvelope]) -> list[int]:
    return [
        p.to_stage
        for p in (decode_payload(e) for e in events)
        if isinstance(p, pb.SeedTransitioned) and p.slot == WIDEN_SLOT
    ]


def test_the_widening_slot_is_cnn_lites_fourth_and_adds_nothing_while_empty() -> None:
    host = build_host("cnn-lite", HostSpec((1, 8, 8), 10))
    spec = host.slot_specs[WIDEN_SLOT]  # type: ignore[index]
    assert (spec.kind, spec.shape) == (pb.SLOT_KIND_WIDEN, (1, 8, 8, 10))
    assert count_parameters(host) == 666  # the slot adds no parameter to the host


def test_a_widening_is_exact_at_graft_and_admission_and_fossilized_it_is_saved(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    data_dir = DataDir(tmp_path)
    store = open_store(data_dir.log)
    try:
        keyring = Keyring.generate()
        trainer = build_trainer(CONFIG, "rwide", store, data_dir, keyring=keyring, kasmina_config=PERMISSIVE)
        trainer.controller = WidenAt(Signer(keyring), "rwide", at=1)
        assert isinstance(trainer.kasmina.slots[WIDEN_SLOT], WideningSlot)
        check = GraftCheck(trainer.kasmina, trainer.model, trainer.splits.validation.inputs[:64])
        trainer.start()
        summary = trainer.run()
        events = list(store.read_all())
    finally:
        store.close()
    assert check.grafts == 2 and check.exact == 2  # the graft and its admission to TRAINING
    assert stages(events)[-1] == pb.SEED_STAGE_FOSSILIZED
    (grafted,) = [p for p in map(decode_payload, events) if isinstance(p, pb.SeedGrafted)]
    assert grafted.slot == WIDEN_SLOT and grafted.parameters == 4 * (1 * 9 + 1) + 4 * 2 * 2 * 10 + 10
    host = count_parameters(build_host("cnn-lite", HostSpec((1, 8, 8), 10)))
    assert summary.parameters == host + grafted.parameters

    seed = trainer.kasmina.slots[WIDEN_SLOT].seed
    assert seed is not None
    (consumer,) = [t for name, t in seed.state_dict().items() if name.endswith("read.weight")]
    assert bool(consumer.abs().sum() > 0)  # trained: the consumer left zero
    assert_seeds_saved_with_the_model(trainer, data_dir, events, [WIDEN_SLOT], EPOCHS, summary.model_sha256)


def test_a_run_cut_while_a_widening_trains_resumes_bit_identically(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    keyring = Keyring.generate()

    def start(data_dir: DataDir, store: EventStore) -> Trainer:
        trainer = build_trainer(CONFIG, "rcut", store, data_dir, keyring=keyring, kasmina_config=PERMISSIVE)
        trainer.controller = WidenAt(Signer(keyring), "rcut", at=1)
        trainer.start()
        return trainer

    reference_dir = DataDir(tmp_path / "ref")
    store = open_store(reference_dir.log)
    try:
        reference = start(reference_dir, store).run()
    finally:
        store.close()
    cut_dir = DataDir(tmp_path / "cut")
    store = open_store(cut_dir.log)
    trainer = start(cut_dir, store)
    for _ in range(3):  # germinated at the boundary of epoch 1, in TRAINING after epoch 2's
        trainer.run_epoch()
    trainer.sink.close()
    store.close()
    store = open_store(cut_dir.log)
    try:
        resumed = resume(store, cut_dir, "rcut", keyring=keyring)
        assert resumed.kasmina.slots[WIDEN_SLOT].seed is not None
        summary = resumed.run()
        events = list(store.read_all())
    finally:
        store.close()
    assert stages(events)[-1] == pb.SEED_STAGE_FOSSILIZED
    assert summary.model_sha256 == reference.model_sha256
