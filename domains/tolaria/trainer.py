"""The live training loop: epochs, the end-of-epoch hook, checkpoints, rollback and resume (SPEC §8).

Per epoch: train, validate, append EpochCompleted (the SystemStatePacket), then the end-of-epoch hook —
assembly, controller, command, guard — timed against its budget (EpochHookTimed, or EpochHookOverrun and
conservative mode), then a rollback if the guard or an operator asked for one, otherwise a checkpoint
every `checkpoint_every` epochs. Events go to the log through an EventSink, off the training thread.

Determinism: every run event has an id derived from (run, generation, epoch, kind), the batch order is a
function of (seed, epoch) and checkpoints hold every RNG state, so a run resumed from its last committed
checkpoint re-creates the events it lost (the store absorbs those it kept) and, on CPU, ends bit-identical
to a run that was never interrupted. On a GPU the metrics of an epoch accumulate on the device and are
read once, at the boundary: no per-batch host/device synchronisation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from domains.kasmina import EpochMeasurements as SeedMeasurements
from domains.kasmina import Evaluation, Kasmina
from domains.tolaria import checkpoint as ckpt
from domains.tolaria import control, metrics
from domains.tolaria.aggregate import RunState, RunStatus, event_id, fold, mode_name, run_stream
from domains.tolaria.config import RunConfig, build_config
from domains.tolaria.data import Splits, batches, epoch_order, eval_batches
from domains.tolaria.headroom import HeadroomMeter, with_headroom
from domains.tolaria.hosts import count_parameters
from domains.tolaria.sink import EventSink
from domains.tolaria.workload import Workload
from eventstore import EventStore
from leyline import decode_payload, new_envelope, pb
from leyline.controller import Controller, ControllerContext
from leyline.datadir import DataDir
from leyline.envelope import new_event_id
from leyline.errors import SignatureError
from leyline.lifecycle import stage_name
from leyline.signing import Verifier

SOURCE = "tolaria"
# Packet metrics measured with the wall clock: they differ between otherwise identical runs.
WALL_CLOCK_METRICS = frozenset({"epoch_ms", "hook_ms"})
GUARD = "tolaria.guard"


def is_rollback_command(envelope: pb.EventEnvelope) -> bool:
    if envelope.event_type != "AdaptationCommandIssued":
        return False
    issued = decode_payload(envelope)
    assert isinstance(issued, pb.AdaptationCommandIssued)
    return issued.command.command_type == pb.COMMAND_TYPE_ROLLBACK


class RunError(Exception):
    """A run that cannot start, resume or go on; the message says why."""


@dataclass
class EpochMeasurements:
    epoch: int
    training_loss: float
    training_accuracy: float
    validation_loss: float
    validation_accuracy: float
    grad_norm: float
    test_accuracy: float
    wall_ms: float


@dataclass
class RunSummary:
    run_id: str
    status: str
    epochs: int
    test_accuracy: float
    validation_accuracy: float
    parameters: int
    seeds: dict[str, int]
    last_position: int
    model_sha256: str
    events_written: int
    rollbacks: int
    resumed: bool
    device: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class RollbackResult:
    target_epoch: int
    mode: int
    duration_ms: float


@dataclass
class HookTiming:
    assembly_ms: float = 0.0
    controller_ms: float = 0.0
    command_ms: float = 0.0
    guard_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.assembly_ms + self.controller_ms + self.command_ms + self.guard_ms


@dataclass
class _Pending:
    """A rollback the guard or an operator asked for at this boundary."""

    target_epoch: int
    mode: int
    reason: str
    requested_by: str
    request_id: str
    trigger: str = "operator"  # "guard", "controller" or "operator" (the metrics label)
    delivery: control.RollbackDelivery | None = None


@dataclass
class Progress:
    """What the loop reports after each epoch (the CLI shows it as a progress bar)."""

    on_start: Callable[[int, int], None] = lambda total, epoch: None
    on_epoch: Callable[[EpochMeasurements, dict[str, int]], None] = lambda m, s: None
    on_rollback: Callable[[RollbackResult], None] = lambda r: None


def new_run_id() -> str:
    return "r" + uuid.uuid4().hex[:8]


def code_version() -> str:
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return described.stdout.strip() or "unknown"


def model_sha256(model: nn.Module) -> str:
    """Hash of the weights: names, dtypes, shapes and bytes of the state dict in order."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        value = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


class Trainer:
    """The run's coordinator: it receives every collaborator (ops/compose.py builds them)."""

    def __init__(
        self,
        config: RunConfig,
        run_id: str,
        store: EventStore,
        data_dir: DataDir,
        workload: Workload,
        kasmina: Kasmina,
        controller: Controller,
        verifier: Verifier,
        progress: Progress | None = None,
    ) -> None:
        self.config = config
        self.run_id = run_id
        self.store = store
        self.data_dir = data_dir
        self.progress = progress or Progress()
        self.device = workload.device
        self.splits: Splits = workload.splits
        self.host_spec = workload.host_spec
        self.model = workload.model
        self.optimizer = workload.optimizer
        self.kasmina = kasmina
        self.headroom = HeadroomMeter(self.kasmina.slots, active=False)
        self.verifier = verifier
        self.controller = controller
        self.applied_commands: list[str] = []
        self.loss_fn = nn.CrossEntropyLoss()
        self.epoch = 0
        self.global_step = 0
        self.generation = 0
        self.loss_history: list[float] = []
        self.guard_rollbacks = 0  # consecutive explosion rollbacks without a clean epoch between them
        self.rollbacks = 0
        self.resumed = False
        self.last_hook_ms = 0.0
        self.cache = ckpt.CheckpointCache(config.fast_rollback_cache)
        self.sink = EventSink(store, store.head_position())

    # ------------------------------------------------------------------ events

    def _envelope(
        self, kind: str, payload: Any, epoch: int, identifier: str | None = None
    ) -> pb.EventEnvelope:
        return new_envelope(
            kind,
            run_stream(self.run_id),
            payload,
            run_id=self.run_id,
            epoch=epoch,
            correlation_id=self.run_id,
            source=SOURCE,
            event_id=identifier or event_id(self.run_id, self.generation, epoch, kind),
        )

    def start(self) -> None:
        """Record the start of a new run."""
        self.sink.emit([self._envelope("RunStarted", self._run_started(resumed=False), 0)])

    def _run_started(self, resumed: bool) -> pb.RunStarted:
        return pb.RunStarted(
            run_id=self.run_id,
            config_json=self.config.to_json(),
            seed=self.config.seed,
            host_model=self.config.host,
            dataset=self.splits.name,
            code_version=code_version(),
            device=str(self.device),
            resumed=resumed,
        )

    def resume(self, state: RunState) -> None:
        """Continue from the log: the last committed checkpoint, or a rollback that was pending."""
        self.resumed = True
        self.generation = state.generation
        started = self._run_started(resumed=True)
        self.sink.emit([self._envelope("RunStarted", started, state.epoch, identifier=new_event_id())])
        if state.pending_rollback is not None:
            pending = state.pending_rollback
            self.epoch = state.epoch
            self._apply_rollback(pending.target_epoch, pending.position, "resume", time.perf_counter(), state)
        elif state.checkpoints:
            record = state.checkpoints[-1]
            data = ckpt.read_file(self.data_dir, record.path, record.content_hash)
            self._restore(ckpt.deserialize(data))

    # ------------------------------------------------------------------ the loop

    def run(self) -> RunSummary:
        self.progress.on_start(self.config.epochs, self.epoch)
        try:
            while self.epoch < self.config.epochs:
                self.run_epoch()
            return self.finish()
        except BaseException as exc:
            self.fail(exc)
            raise

    def run_epoch(self) -> EpochMeasurements:
        started = time.perf_counter()
        epoch = self.epoch + 1
        train_loss, train_correct, grad_norm = self._train(epoch)
        val_loss, val_correct = self._evaluate(self.splits.validation)
        final = epoch == self.config.epochs
        test_correct = self._evaluate(self.splits.test)[1] if final else torch.zeros((), device=self.device)
        # One host/device transfer per epoch.
        values = torch.stack(
            [
                t.to(torch.float64)
                for t in (train_loss, train_correct, val_loss, val_correct, grad_norm, test_correct)
            ]
        ).tolist()
        n_train, n_val, n_test = len(self.splits.train), len(self.splits.validation), len(self.splits.test)
        measured = EpochMeasurements(
            epoch=epoch,
            training_loss=values[0] / n_train,
            training_accuracy=values[1] / n_train,
            validation_loss=values[2] / n_val,
            validation_accuracy=values[3] / n_val,
            grad_norm=values[4],
            test_accuracy=values[5] / n_test if final else 0.0,
            wall_ms=(time.perf_counter() - started) * 1000,
        )
        self.epoch = epoch
        self._boundary(measured)
        metrics.EPOCHS.inc()
        metrics.EPOCH_SECONDS.observe(time.perf_counter() - started)
        return measured

    def _train(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.model.train()
        self.headroom.activate(self.controller.measures_headroom)  # the controller may have been swapped
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        order = epoch_order(self.config.seed, epoch, len(self.splits.train))
        for batch in batches(self.splits.train, order, self.config.batch_size):
            self.optimizer.zero_grad(set_to_none=True)
            logits = self.model(batch.inputs)
            loss = self.loss_fn(logits, batch.targets)
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.detach() * len(batch)
            correct += (logits.detach().argmax(dim=1) == batch.targets).sum()
            self.global_step += 1
        grads = [p.grad.detach() for p in self.model.parameters() if p.grad is not None]
        grad_norm = (
            torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
            if grads
            else torch.zeros((), device=self.device)
        )
        return loss_sum, correct, grad_norm

    @torch.no_grad()
    def _evaluate(self, split: Any) -> tuple[torch.Tensor, torch.Tensor]:
        self.model.eval()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        for batch in eval_batches(split, 512):
            logits = self.model(batch.inputs)
            loss_sum += self.loss_fn(logits, batch.targets) * len(batch)
            correct += (logits.argmax(dim=1) == batch.targets).sum()
        return loss_sum, correct

    # ------------------------------------------------------------------ the end-of-epoch hook

    def packet_id(self, epoch: int) -> int:
        digest = hashlib.sha256(f"packet/{self.config.seed}/{self.run_id}/{self.generation}/{epoch}".encode())
        return int.from_bytes(digest.digest()[:8], "little")

    def _packet(self, m: EpochMeasurements) -> pb.SystemStatePacket:
        packet = pb.SystemStatePacket(
            epoch=m.epoch,
            global_step=self.global_step,
            training_loss=m.training_loss,
            training_accuracy=m.training_accuracy,
            validation_loss=m.validation_loss,
            validation_accuracy=m.validation_accuracy,
            run_id=self.run_id,
            packet_id=self.packet_id(m.epoch),
            hardware=self._hardware(),
        )
        packet.metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        packet.metrics["grad_norm"] = m.grad_norm
        packet.metrics["epoch_ms"] = m.wall_ms
        packet.metrics["hook_ms"] = self.last_hook_ms
        return packet

    def _hardware(self) -> pb.HardwareContext:
        if self.device.type == "cuda":
            free, total = torch.cuda.mem_get_info(self.device)
            return pb.HardwareContext(
                device=str(self.device),
                memory_used_gb=(total - free) / 2**30,
                memory_total_gb=total / 2**30,
                device_count=torch.cuda.device_count(),
            )
        return pb.HardwareContext(device="cpu", device_count=1)

    def _validation(self) -> Evaluation:
        """Kasmina's probe: the validation pass with the slots as it has set them."""
        loss, correct = torch.stack(self._evaluate(self.splits.validation)).tolist()
        return Evaluation(loss / len(self.splits.validation), correct / len(self.splits.validation))

    def seeds_by_stage(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for state in self.kasmina.state.slots:
            name = stage_name(state.stage)
            counts[name] = counts.get(name, 0) + 1
        return counts

    def _boundary(self, m: EpochMeasurements) -> None:
        # The seed lifecycle's own step (gates, alpha ramps, probes) belongs to validation, before the hook.
        seed_events = self.kasmina.end_epoch(
            m.epoch,
            SeedMeasurements(m.validation_loss, m.validation_accuracy, m.training_loss),
            self._validation,
        )
        headroom = self.headroom.drain()
        timing = HookTiming()
        clock = time.perf_counter()
        packet = self._packet(m)
        packet.seeds.extend(self.kasmina.seed_states())
        parameters = count_parameters(self.model)
        completed = pb.EpochCompleted(
            state=packet, epoch_wall_ms=m.wall_ms, test_accuracy=m.test_accuracy, parameters=parameters
        )
        # The epoch's events go to the writer thread in one hand-over after the hook, so that the writer
        # does not compete with the hook for the interpreter while it is being timed.
        events = [*seed_events, self._envelope("EpochCompleted", completed, m.epoch)]
        now = time.perf_counter()
        timing.assembly_ms, clock = (now - clock) * 1000, now

        context = ControllerContext(
            run_id=self.run_id,
            epoch=m.epoch,
            seeds=with_headroom(packet.seeds, headroom),
            catalogue=(),
            parameters=parameters,
            last_hook_ms=self.last_hook_ms,
            applied_commands=tuple(self.applied_commands),
            hook_budget_ms=self.config.hook_budget_ms,
        )
        output = self.controller.decide(packet, context)
        now = time.perf_counter()
        timing.controller_ms, clock = (now - clock) * 1000, now

        events.extend(output.events)
        self.applied_commands = []
        ordered: _Pending | None = None
        if output.command is not None:
            events.append(output.command)
            if is_rollback_command(output.command):
                ordered, effects = self._rollback_command(output.command, m.epoch)
            else:
                effects = self.kasmina.execute(output.command, m.epoch)
            events.extend(effects)
            if ordered is not None or (effects and effects[0].event_type != "CommandRejected"):
                self.applied_commands.append(output.command.event_id)
        now = time.perf_counter()
        timing.command_ms, clock = (now - clock) * 1000, now

        pending = self._guard(m) or ordered or self._operator_request()
        timing.guard_ms = (time.perf_counter() - clock) * 1000

        events.extend(self._record_hook(m.epoch, timing))
        metrics.TRAINING_LOSS.set(m.training_loss)
        metrics.VALIDATION_ACCURACY.set(m.validation_accuracy)
        if pending is not None:
            self.sink.emit(events)
            self.progress.on_epoch(m, self.seeds_by_stage())
            result = self._rollback(pending)
            self.progress.on_rollback(result)
            return
        self.loss_history = [*self.loss_history, m.training_loss][-self.config.loss_window :]
        self.guard_rollbacks = 0
        if m.epoch % self.config.checkpoint_every == 0 or m.epoch == self.config.epochs:
            self.checkpoint(events)
        else:
            self.sink.emit(events)
        self.progress.on_epoch(m, self.seeds_by_stage())

    def _record_hook(self, epoch: int, timing: HookTiming) -> list[pb.EventEnvelope]:
        total = timing.total_ms
        overrun = total > self.config.hook_budget_ms
        hook = pb.EpochHookTimed(
            epoch=epoch,
            assembly_ms=timing.assembly_ms,
            controller_ms=timing.controller_ms,
            command_ms=timing.command_ms,
            guard_ms=timing.guard_ms,
            total_ms=total,
            overrun=overrun,
            budget_ms=self.config.hook_budget_ms,
        )
        kind = "EpochHookOverrun" if overrun else "EpochHookTimed"
        events = [self._envelope(kind, hook, epoch)]
        if overrun:
            metrics.HOOK_OVERRUNS.inc()
            reason = f"end-of-epoch hook took {total:.1f} ms, budget {self.config.hook_budget_ms:.1f} ms"
            events.extend(self.controller.enter_conservative_mode(reason, epoch))
        metrics.HOOK_SECONDS.observe(total / 1000)
        self.last_hook_ms = total
        return events

    def _guard(self, m: EpochMeasurements) -> _Pending | None:
        """Loss explosion (non-finite, or above factor × the recent mean): fast rollback to the newest."""
        recent = self.loss_history
        mean = sum(recent) / len(recent) if recent else float("nan")
        exploded = not np.isfinite(m.training_loss) or (
            bool(recent) and m.training_loss > self.config.loss_explosion_factor * mean
        )
        if not exploded:
            return None
        latest = self.cache.latest()
        if latest is None or self.guard_rollbacks >= self.config.max_guard_rollbacks:
            raise RunError(
                f"training loss exploded at epoch {m.epoch} ({m.training_loss:.4g}) and no rollback is left "
                f"(cached checkpoints: {len(self.cache)}, rollbacks in a row: {self.guard_rollbacks})"
            )
        self.guard_rollbacks += 1
        return _Pending(
            target_epoch=latest.epoch,
            mode=pb.ROLLBACK_MODE_FAST,
            reason=f"loss explosion at epoch {m.epoch}: {m.training_loss:.4g} vs recent mean {mean:.4g}",
            requested_by=GUARD,
            request_id=event_id(self.run_id, self.generation, m.epoch, "RollbackRequested"),
            trigger="guard",
        )

    def _rollback_command(
        self, envelope: pb.EventEnvelope, epoch: int
    ) -> tuple[_Pending | None, list[pb.EventEnvelope]]:
        """A controller's signed ROLLBACK command: verified, then applied at this boundary."""
        issued = decode_payload(envelope)
        assert isinstance(issued, pb.AdaptationCommandIssued)
        command = issued.command
        try:
            self.verifier.verify(envelope)
        except SignatureError as exc:
            return None, [self._command_rejected(envelope, command, "bad_signature", str(exc), epoch)]
        target = command.rollback.target_epoch
        mode = self._rollback_mode(target)
        if mode == pb.ROLLBACK_MODE_FULL and self.log_state().checkpoint_at_or_before(target) is None:
            reason = f"no committed checkpoint at or before epoch {target}"
            return None, [self._command_rejected(envelope, command, "no_checkpoint", reason, epoch)]
        reason = command.rollback.reason or f"controller command {command.command_id}"
        request_id = event_id(self.run_id, self.generation, epoch, "RollbackRequested")
        requested_by = command.issued_by or "controller"
        return _Pending(target, mode, reason, requested_by, request_id, trigger="controller"), []

    def _rollback_mode(self, target_epoch: int) -> int:
        """The mode a rollback to this epoch is requested in: fast when its checkpoint is cached."""
        return pb.ROLLBACK_MODE_FAST if self.cache.get(target_epoch) is not None else pb.ROLLBACK_MODE_FULL

    def _command_rejected(
        self, envelope: pb.EventEnvelope, command: pb.AdaptationCommand, code: str, reason: str, epoch: int
    ) -> pb.EventEnvelope:
        rejected = pb.CommandRejected(command_id=command.command_id, reason=reason, code=code)
        return new_envelope(
            "CommandRejected",
            envelope.stream,
            rejected,
            run_id=self.run_id,
            epoch=epoch,
            correlation_id=command.command_id,
            causation_id=envelope.event_id,
            source=SOURCE,
            event_id=event_id(self.run_id, self.generation, epoch, "CommandRejected"),
        )

    def _operator_request(self) -> _Pending | None:
        delivery = control.take(self.data_dir, self.run_id)
        if delivery is None:
            return None
        target = delivery.request.target_epoch
        return _Pending(
            target_epoch=target,
            mode=self._rollback_mode(target),
            reason=delivery.request.reason or "operator request",
            requested_by=delivery.request.requested_by or "operator",
            request_id=delivery.request_id,
            delivery=delivery,
        )

    # ------------------------------------------------------------------ checkpoints

    def components(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": ckpt.capture_rng(),
            "data_cursor": {"epoch": self.epoch + 1, "batch": 0},
            "seeds": self.kasmina.state_dict(),
            "controller": dict(self.controller.state_dict()),
            "trainer": {
                "applied_commands": list(self.applied_commands),
                "epoch": self.epoch,
                "global_step": self.global_step,
                "loss_history": list(self.loss_history),
            },
        }

    def checkpoint(self, epoch_events: Sequence[pb.EventEnvelope] = ()) -> ckpt.CachedCheckpoint:
        """Snapshot and cache now; the writer thread serializes and writes the file, then appends
        CheckpointCommitted, so the training thread only pays for a copy of the state.

        The epoch's own events are appended in the same atomic append as CheckpointCommitted: a crash
        leaves either both or neither, so a resume never re-runs an epoch whose controller and seed
        events (which carry random ids) are already in the log."""
        entry = ckpt.CachedCheckpoint.snapshot(self.epoch, self.components())
        self.cache.put(entry)
        envelope_id = event_id(self.run_id, self.generation, self.epoch, "CheckpointCommitted")

        def write(committed_position: int) -> list[pb.EventEnvelope]:
            started = time.perf_counter()
            serialized = ckpt.serialize(entry.epoch, entry.components)
            ckpt.write_file(self.data_dir, serialized)
            entry.serialized = serialized
            metrics.CHECKPOINT_WRITE_SECONDS.observe(time.perf_counter() - started)
            metrics.CHECKPOINT_BYTES.set(len(serialized.data))
            manifest = pb.CheckpointManifest(
                run_id=self.run_id,
                epoch=serialized.epoch,
                content_hash=serialized.sha256,
                components=serialized.components,
                log_position=committed_position,
                created_at_ms=time.time_ns() // 1_000_000,
                size_bytes=len(serialized.data),
                path=serialized.relative_path,
            )
            committed = pb.CheckpointCommitted(manifest=manifest)
            envelope = self._envelope("CheckpointCommitted", committed, serialized.epoch, envelope_id)
            return [*epoch_events, envelope]

        self.sink.submit(write)
        return entry

    def _restore(self, components: dict[str, Any]) -> None:
        self.kasmina.load_state_dict(components["seeds"])  # re-grafts seeds before the host's weights
        self.model.load_state_dict(components["model"])
        self.optimizer.load_state_dict(components["optimizer"])
        ckpt.restore_rng(components["rng"])
        self.controller.load_state_dict(components["controller"])
        trainer = components["trainer"]
        self.epoch = int(trainer["epoch"])
        self.global_step = int(trainer["global_step"])
        self.loss_history = [float(x) for x in trainer["loss_history"]]
        self.applied_commands = [str(x) for x in trainer["applied_commands"]]

    # ------------------------------------------------------------------ rollback

    def rollback_to(self, target_epoch: int, reason: str, requested_by: str) -> RollbackResult:
        """Roll back now, between epochs (fast when the target is cached, else full from disk)."""
        mode = self._rollback_mode(target_epoch)
        return self._rollback(_Pending(target_epoch, mode, reason, requested_by, new_event_id()))

    def _rollback(self, pending: _Pending) -> RollbackResult:
        started = time.perf_counter()
        request = pb.RollbackRequested(
            run_id=self.run_id,
            target_epoch=pending.target_epoch,
            mode=pending.mode,  # type: ignore[arg-type]
            reason=pending.reason,
            requested_by=pending.requested_by,
        )
        self.sink.emit([self._envelope("RollbackRequested", request, self.epoch, pending.request_id)])
        self.sink.flush()
        if pending.delivery is not None:
            control.done(self.data_dir, pending.delivery)
        state = self.log_state()
        if state.pending_rollback is None:
            raise RunError(f"rollback request {pending.request_id} is not in the log after a flush")
        position = state.pending_rollback.position
        return self._apply_rollback(pending.target_epoch, position, pending.trigger, started, state)

    def log_state(self) -> RunState:
        return fold(self.store.read_stream(run_stream(self.run_id)))

    def _apply_rollback(
        self, target_epoch: int, request_position: int, trigger: str, started: float, state: RunState
    ) -> RollbackResult:
        record = state.checkpoint_at_or_before(target_epoch)
        if record is None:
            raise RunError(f"run {self.run_id} has no committed checkpoint at or before epoch {target_epoch}")
        cached = self.cache.get(record.epoch)
        written = cached.serialized if cached is not None else None
        request_epoch = self.epoch
        if cached is not None and written is not None and written.sha256 == record.content_hash:
            mode = pb.ROLLBACK_MODE_FAST
            self._restore(ckpt.clone(cached.components))
        else:
            mode = pb.ROLLBACK_MODE_FULL
            data = ckpt.read_file(self.data_dir, record.path, record.content_hash)
            self._restore(ckpt.deserialize(data))
        self.cache.discard_after(record.epoch)
        duration_ms = (time.perf_counter() - started) * 1000
        completed = pb.RollbackCompleted(
            run_id=self.run_id,
            target_epoch=record.epoch,
            target_position=record.position,
            checkpoint_hash=record.content_hash,
            mode=mode,
            duration_ms=duration_ms,
            superseded_from=record.position + 1,
            superseded_to=request_position - 1,
        )
        self.sink.emit([self._envelope("RollbackCompleted", completed, request_epoch)])
        self.generation = state.generation + 1
        self.rollbacks += 1
        metrics.ROLLBACKS.labels(mode=mode_name(mode), trigger=trigger).inc()
        metrics.ROLLBACK_SECONDS.labels(mode=mode_name(mode)).observe(duration_ms / 1000)
        return RollbackResult(record.epoch, mode, duration_ms)

    # ------------------------------------------------------------------ the end

    def finish(self) -> RunSummary:
        # Measured here rather than taken from the last epoch: a run resumed after its final checkpoint
        # (killed before RunCompleted) trains no epoch in this process.
        correct = torch.stack([self._evaluate(s)[1] for s in (self.splits.validation, self.splits.test)])
        validation_correct, test_correct = correct.tolist()
        validation_accuracy = validation_correct / len(self.splits.validation)
        test_accuracy = test_correct / len(self.splits.test)
        digest = model_sha256(self.model)
        parameters = count_parameters(self.model)
        completed = pb.RunCompleted(
            run_id=self.run_id,
            epochs=self.epoch,
            test_accuracy=test_accuracy,
            parameters=parameters,
            model_sha256=digest,
        )
        # Seeds still in flight are torn down at run end (SPEC §7), in the same append as RunCompleted; the
        # accuracies and model_sha256 above describe the model as trained.
        teardown = self.kasmina.teardown(self.epoch)
        self.sink.emit([*teardown, self._envelope("RunCompleted", completed, self.epoch)])
        last_position = self.sink.flush()
        self.sink.close()
        return RunSummary(
            run_id=self.run_id,
            status=RunStatus.COMPLETED.value,
            epochs=self.epoch,
            test_accuracy=test_accuracy,
            validation_accuracy=validation_accuracy,
            parameters=parameters,
            seeds=self.seeds_by_stage(),
            last_position=last_position,
            model_sha256=digest,
            events_written=self.sink.events_written,
            rollbacks=self.rollbacks,
            resumed=self.resumed,
            device=str(self.device),
        )

    def fail(self, exc: BaseException) -> None:
        """Record RunFailed for an error (an interrupt is not a failure: the run can be resumed)."""
        if isinstance(exc, KeyboardInterrupt):
            self.sink.close()
            return
        failed = pb.RunFailed(
            run_id=self.run_id, error=f"{type(exc).__name__}: {exc}"[:500], epoch=self.epoch
        )
        try:
            self.sink.emit([self._envelope("RunFailed", failed, self.epoch, new_event_id())])
            self.sink.flush()
        finally:
            self.sink.close()


def config_to_resume(state: RunState, run_id: str, epochs: int | None, device: str | None) -> RunConfig:
    """The config a run resumes with: the one it started with, with the epochs and device given now."""
    if state.status is RunStatus.ABSENT:
        raise RunError(f"run {run_id} does not exist in this log")
    if state.status is RunStatus.COMPLETED:
        raise RunError(
            f"run {run_id} already completed (model sha256 {state.model_sha256[:12]}…); nothing to resume"
        )
    values = json.loads(state.config_json)
    values.update({k: v for k, v in (("epochs", epochs), ("device", device)) if v is not None})
    return build_config(values)
