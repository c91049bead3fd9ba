"""The training loop in process, on the real file store: events, resume from a checkpoint, the guard."""

from __future__ import annotations

from pathlib import Path

import torch

from domains.kasmina import KasminaConfig
from domains.tamiyo import HeuristicConfig, HeuristicPolicy, TamiyoController
from domains.tolaria.config import build_config
from domains.tolaria.report import model_sha256
from eventstore import open_store
from leyline import new_envelope, pb
from leyline.controller import ControllerContext, ControllerOutput, NoOpController
from leyline.datadir import DataDir
from leyline.lifecycle import LifecycleConfig
from leyline.signing import Keyring, Signer
from ops.compose import build_trainer, new_run, resume
from tests.tolaria.helpers import SMALL, checkpoint_hashes, epoch_records, payloads, run_events

# A run long enough for Tamiyo to germinate and for seeds to be in flight at its end.
GROWING: dict[str, object] = {
    "controller": "tamiyo",
    "epochs": 20,
    "dataset": "digits",
    "dataset_options": {},
    "batch_size": 64,
    # Resume is bit-identical only where no end-of-epoch hook overran its budget (an overrun changes the
    # controller's mode by design); on a loaded machine an 18 ms hook can overrun in one run and not the
    # other, so these comparisons give the hook a budget no machine overruns.
    "hook_budget_ms": 60_000.0,
}


def train(data_dir: Path, run_id: str, **overrides: object) -> tuple[str, list[pb.EventEnvelope]]:
    store = open_store(DataDir(data_dir).log)
    try:
        summary = new_run(store, DataDir(data_dir), build_config({**SMALL, **overrides}), run_id).run()
    finally:
        store.close()
    return summary.model_sha256, run_events(data_dir, run_id)


def test_a_run_records_its_epochs_hooks_and_checkpoints(tmp_path: Path) -> None:
    digest, events = train(tmp_path, "rplain")
    kinds = [e.event_type for e in events]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunCompleted"
    assert kinds.count("EpochCompleted") == 6
    assert kinds.count("EpochHookTimed") + kinds.count("EpochHookOverrun") == 6
    assert sorted(checkpoint_hashes(events)) == [1, 2, 3, 4, 5, 6]
    packets = [p.state for p in payloads(events, "EpochCompleted")]
    assert [p.epoch for p in packets] == [1, 2, 3, 4, 5, 6]
    assert all(p.run_id == "rplain" and p.packet_id for p in packets)
    assert all(len(p.SerializeToString()) < 280 for p in packets)
    assert packets[-1].training_loss < packets[0].training_loss
    completed = payloads(events, "RunCompleted")[0]
    assert completed.model_sha256 == digest and completed.epochs == 6 and completed.test_accuracy > 0.5
    for hook in payloads(events, "EpochHookTimed"):
        assert hook.budget_ms == 18.0 and hook.total_ms >= hook.controller_ms
    for manifest in (p.manifest for p in payloads(events, "CheckpointCommitted")):
        assert (tmp_path / manifest.path).stat().st_size == manifest.size_bytes
        assert set(manifest.components) >= {"model", "optimizer", "rng", "data_cursor", "seeds", "controller"}


def test_same_seed_same_run_and_another_seed_differs(tmp_path: Path) -> None:
    first, first_events = train(tmp_path / "a", "rsame")
    second, second_events = train(tmp_path / "b", "rsame")
    third, _ = train(tmp_path / "c", "rsame", seed=1)
    assert first == second != third
    assert epoch_records(first_events) == epoch_records(second_events)


def test_resume_from_a_checkpoint_continues_bit_identically(tmp_path: Path) -> None:
    reference, reference_events = train(tmp_path / "ref", "rres")
    data_dir = tmp_path / "cut"
    store = open_store(DataDir(data_dir).log)
    trainer = new_run(store, DataDir(data_dir), build_config(SMALL), "rres")
    for _ in range(3):
        trainer.run_epoch()
    trainer.sink.close()  # the process "dies" here: nothing after epoch 3 is written
    store.close()
    store = open_store(DataDir(data_dir).log)
    try:
        resumed = resume(store, DataDir(data_dir), "rres")
        assert resumed.epoch == 3
        summary = resumed.run()
    finally:
        store.close()
    assert summary.model_sha256 == reference
    events = run_events(data_dir, "rres")
    assert epoch_records(events) == epoch_records(reference_events)
    assert checkpoint_hashes(events) == checkpoint_hashes(reference_events)
    assert [p.resumed for p in payloads(events, "RunStarted")] == [False, True]


def test_loss_explosion_drill_triggers_fast_rollback(tmp_path: Path) -> None:
    reference, _ = train(tmp_path / "ref", "rboom")
    data_dir = tmp_path / "drill"
    store = open_store(DataDir(data_dir).log)
    try:
        trainer = new_run(store, DataDir(data_dir), build_config(SMALL), "rboom")
        for _ in range(3):
            trainer.run_epoch()
        before = model_sha256(trainer.model)
        noise = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for parameter in trainer.model.parameters():
                parameter.add_(torch.randn(parameter.shape, generator=noise) * 100.0)
        exploded = trainer.run_epoch()
        assert exploded.epoch == 4
        assert trainer.epoch == 3 and model_sha256(trainer.model) == before
        summary = trainer.run()
    finally:
        store.close()
    # The rollback restored every RNG state too: the run ends as if nothing had happened.
    assert summary.model_sha256 == reference and summary.rollbacks == 1
    events = run_events(data_dir, "rboom")
    (requested,) = payloads(events, "RollbackRequested")
    (completed,) = payloads(events, "RollbackCompleted")
    assert requested.mode == completed.mode == pb.ROLLBACK_MODE_FAST
    assert requested.requested_by == "tolaria.guard" and "loss explosion" in requested.reason
    assert completed.target_epoch == 3 and completed.duration_ms < 60_000
    commits = {e.global_position: e for e in events if e.event_type == "CheckpointCommitted"}
    assert payloads([commits[completed.target_position]], "CheckpointCommitted")[0].manifest.epoch == 3
    request_position = next(e.global_position for e in events if e.event_type == "RollbackRequested")
    assert (completed.superseded_from, completed.superseded_to) == (
        completed.target_position + 1,
        request_position - 1,
    )
    epochs = [p.state.epoch for p in payloads(events, "EpochCompleted")]
    assert epochs == [1, 2, 3, 4, 4, 5, 6]  # the exploded epoch 4 stays in the log, superseded


def test_repeated_explosions_fail_the_run(tmp_path: Path) -> None:
    store = open_store(DataDir(tmp_path).log)
    try:
        trainer = new_run(
            store, DataDir(tmp_path), build_config({**SMALL, "max_guard_rollbacks": 0}), "rfail"
        )
        trainer.run_epoch()
        trainer.run_epoch()
        noise = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for parameter in trainer.model.parameters():
                parameter.add_(torch.randn(parameter.shape, generator=noise) * 100.0)
        try:
            trainer.run()
        except Exception as exc:  # RunError, recorded as RunFailed
            assert "loss exploded" in str(exc)
        else:
            raise AssertionError("the run should have failed")
    finally:
        store.close()
    (failed,) = payloads(run_events(tmp_path, "rfail"), "RunFailed")
    assert "loss exploded at epoch 3" in failed.error


def test_a_growing_run_resumes_bit_identically_mid_seed(tmp_path: Path) -> None:
    """With Tamiyo and Kasmina: a seed germinated before the cut is re-grafted from the checkpoint."""
    reference, reference_events = train(tmp_path / "ref", "rgrow", **GROWING)
    germinated = [
        e.epoch
        for e in reference_events
        if e.event_type == "EpochCompleted"
        and any(s.stage != pb.SEED_STAGE_DORMANT for s in payloads([e], "EpochCompleted")[0].state.seeds)
    ]
    assert germinated, "the controller grew nothing; the test needs a seed alive at the cut"
    cut = germinated[0] + 1
    data_dir = tmp_path / "cut"
    store = open_store(DataDir(data_dir).log)
    trainer = new_run(store, DataDir(data_dir), build_config({**SMALL, **GROWING}), "rgrow")
    for _ in range(cut):
        trainer.run_epoch()
    trainer.sink.close()
    store.close()
    store = open_store(DataDir(data_dir).log)
    try:
        resumed = resume(store, DataDir(data_dir), "rgrow")
        assert any(stage != "DORMANT" for stage in resumed.seeds_by_stage())
        summary = resumed.run()
    finally:
        store.close()
    assert summary.model_sha256 == reference


class RollbackAtEpoch(NoOpController):
    """A controller that orders one signed rollback (as Tamiyo's risk engine does on a loss signal)."""

    def __init__(self, signer: Signer, run_id: str, at: int, target: int) -> None:
        self.signer, self.run_id, self.at, self.target = signer, run_id, at, target
        self.fired = False

    def decide(self, packet: pb.SystemStatePacket, context: ControllerContext) -> ControllerOutput:
        if packet.epoch != self.at or self.fired:
            return ControllerOutput()
        self.fired = True
        command = pb.AdaptationCommand(
            command_id=f"c{packet.epoch}",
            command_type=pb.COMMAND_TYPE_ROLLBACK,
            rollback=pb.RollbackCommand(target_epoch=self.target, reason="risk: loss drift"),
            issued_by="test-controller",
        )
        issued = pb.AdaptationCommandIssued(command=command)
        envelope = new_envelope(
            "AdaptationCommandIssued", f"command-{command.command_id}", issued, run_id=self.run_id
        )
        return ControllerOutput(command=self.signer.sign(envelope))


def test_a_controller_rollback_command_is_verified_and_applied(tmp_path: Path) -> None:
    keyring = Keyring.load_or_create(DataDir(tmp_path).keys)
    store = open_store(DataDir(tmp_path).log)
    try:
        controller = RollbackAtEpoch(Signer(keyring), "rctl", at=4, target=2)
        trainer = new_run(store, DataDir(tmp_path), build_config(SMALL), "rctl", controller=controller)
        summary = trainer.run()
        forged = RollbackAtEpoch(Signer(Keyring.generate("k9")), "rctl2", at=2, target=1)
        other = new_run(store, DataDir(tmp_path), build_config(SMALL), "rctl2", controller=forged)
        other.run()
    finally:
        store.close()
    assert summary.rollbacks == 1
    events = run_events(tmp_path, "rctl")
    (requested,) = payloads(events, "RollbackRequested")
    (completed,) = payloads(events, "RollbackCompleted")
    assert requested.requested_by == "test-controller" and requested.reason == "risk: loss drift"
    assert completed.target_epoch == 2 and completed.mode == pb.ROLLBACK_MODE_FAST
    assert [p.state.epoch for p in payloads(events, "EpochCompleted")] == [1, 2, 3, 4, 3, 4, 5, 6]
    assert not payloads(run_events(tmp_path, "rctl2"), "RollbackRequested")  # the forged one is refused
    store = open_store(DataDir(tmp_path).log)
    try:
        (rejected,) = [e for e in store.read_stream("command-c2") if e.event_type == "CommandRejected"]
    finally:
        store.close()
    # Kasmina's intake names the refusal as it does for a seed command: the forger's key is unknown here
    assert payloads([rejected], "CommandRejected")[0].code == "unknown_key"


class RecordingStore:
    """The real file store, remembering which events went in together in each append."""

    def __init__(self, path: Path) -> None:
        self.store = open_store(path)
        self.appends: list[list[pb.EventEnvelope]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    def append(self, events: list[pb.EventEnvelope], expected: object = None) -> list[int]:
        self.appends.append(list(events))
        return self.store.append(events)


def test_an_epochs_events_and_its_checkpoint_are_one_atomic_append(tmp_path: Path) -> None:
    store = RecordingStore(DataDir(tmp_path).log)
    try:
        new_run(store, DataDir(tmp_path), build_config(SMALL), "ratomic").run()  # type: ignore[arg-type]
    finally:
        store.close()
    together = 0
    for batch in store.appends:
        epochs = {e.epoch for e in batch if e.event_type == "EpochCompleted"}
        checkpointed = {e.epoch for e in batch if e.event_type == "CheckpointCommitted"}
        assert epochs == checkpointed, "an epoch's events were appended apart from its checkpoint"
        together += len(epochs)
    assert together == 6


def test_seeds_in_flight_are_terminated_at_run_end(tmp_path: Path) -> None:
    train(tmp_path, "rend", **{**GROWING, "epochs": 16})  # its third seed is PROBATIONARY at epoch 16
    store = open_store(DataDir(tmp_path).log)
    try:
        events = [e for e in store.read_all() if e.run_id == "rend" or e.stream.startswith("seed-rend.")]
    finally:
        store.close()
    last_stage: dict[str, int] = {}
    for envelope in events:
        if envelope.event_type == "SeedTransitioned":
            last_stage[envelope.stream] = payloads([envelope], "SeedTransitioned")[0].to_stage
    assert last_stage, "the controller grew nothing; the test needs a seed"
    assert pb.SEED_STAGE_TERMINATED in last_stage.values(), "this seed-0 run ends with a seed in flight"
    settled = {pb.SEED_STAGE_FOSSILIZED, pb.SEED_STAGE_TERMINATED, pb.SEED_STAGE_DORMANT}
    assert all(stage in settled for stage in last_stage.values()), last_stage
    tail = [e.event_type for e in events][
        -1 - sum(s == pb.SEED_STAGE_TERMINATED for s in last_stage.values()) :
    ]
    assert tail[-1] == "RunCompleted" and set(tail[:-1]) <= {"SeedTransitioned"}


def test_run_started_records_the_lifecycle_and_controller_config_and_resume_restores_them(
    tmp_path: Path,
) -> None:
    data_dir = DataDir(tmp_path)
    lifecycle = LifecycleConfig(embargo_epochs=5, alpha_ramp_epochs=4)
    heuristic = HeuristicConfig(plateau_window=7)
    store = open_store(data_dir.log)
    try:
        config = build_config({**SMALL, "controller": "tamiyo"})
        trainer = build_trainer(
            config,
            "rcfg",
            store,
            data_dir,
            kasmina_config=KasminaConfig(lifecycle=lifecycle),
            controller_config_json=heuristic.to_json(),
        )
        trainer.start()
        trainer.run_epoch()
        trainer.sink.close()
        started = payloads(list(store.read_all()), "RunStarted")[0]
        assert LifecycleConfig.from_pb(started.lifecycle) == lifecycle
        assert HeuristicConfig.from_json(started.controller_config_json) == heuristic
        resumed = resume(store, data_dir, "rcfg")  # the defaults differ; the recorded values win
        resumed.sink.close()
    finally:
        store.close()
    assert resumed.kasmina.config.lifecycle == lifecycle
    assert isinstance(resumed.controller, TamiyoController)
    assert isinstance(resumed.controller.policy, HeuristicPolicy)
    assert resumed.controller.policy.config == heuristic
