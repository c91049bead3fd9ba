"""The live training loop's coordinator: epochs, the end-of-epoch boundary, checkpoints, rollback, resume.

Per epoch (`run_epoch`, top to bottom): train, validate, Kasmina's lifecycle step, the end-of-epoch hook
(`hook.py`: assembly, controller, command, guard, timed against the budget), then a rollback if the
guard, the controller or an operator asked for one (`rollback.py`), otherwise a checkpoint every
`checkpoint_every` epochs (`checkpointing.py`: taken here, written by the writer thread). The training
and evaluation passes are in `loop.py`, a run's end in `ending.py`. Events go to the log through an
EventSink, off the training thread. Every collaborator comes in from ops/compose.py.

Determinism: every run event has an id derived from (run, generation, epoch, kind), the batch order is a
function of (seed, epoch) and checkpoints hold every RNG state, so a run resumed from its last committed
checkpoint re-creates the events it lost (the store absorbs those it kept) and, on CPU, ends bit-identical
to a run that was never interrupted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from domains.kasmina import EpochMeasurements as SeedMeasurements
from domains.kasmina import Evaluation, Kasmina
from domains.tolaria import boundary, checkpointing, ending, hook, metrics, rollback
from domains.tolaria import checkpoint as ckpt
from domains.tolaria.aggregate import RequestRollback, RunState, RunStatus, event_id, fold, run_stream
from domains.tolaria.boundary import BoundaryClock
from domains.tolaria.collective import Collective, SingleProcess
from domains.tolaria.config import RunConfig, build_config
from domains.tolaria.data import Splits, epoch_order
from domains.tolaria.headroom import HeadroomMeter
from domains.tolaria.loop import EpochMeasurements, evaluate, example_losses, measure
from domains.tolaria.report import Progress, RunSummary, code_version
from domains.tolaria.rollback import RollbackResult, RunError
from domains.tolaria.sink import DiscardingSink, EventSink
from domains.tolaria.workload import Workload
from eventstore import EventStore
from leyline import new_envelope, pb
from leyline.controller import Controller
from leyline.datadir import DataDir
from leyline.envelope import new_event_id
from leyline.lifecycle import stage_name
from leyline.schedule import lr_factor
from leyline.signing import Signer, Verifier

# Packet metrics measured with the wall clock: they differ between otherwise identical runs.
WALL_CLOCK_METRICS = frozenset({"epoch_ms", "hook_ms"})


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
        signer: Signer,
        verifier: Verifier,
        progress: Progress | None = None,
        controller_config_json: str = "",
        closing: Sequence[Callable[[], None]] = (),
        collective: Collective | None = None,
        boundary_clock: BoundaryClock | None = None,
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
        self.controller = controller
        self.signer = signer  # signs the rollback requests the run records
        self.verifier = verifier  # the process's one Verifier: operators' requests, recorded requests
        self.controller_config_json = controller_config_json  # recorded in RunStarted, restored on resume
        self.closing = tuple(closing)  # background work the composition root started for this run
        self.headroom = HeadroomMeter(kasmina.slots, active=False)
        self.loss_fn = nn.CrossEntropyLoss()
        self.applied_commands: list[str] = []
        self.epoch = 0
        self.global_step = 0
        self.generation = 0
        self.loss_history: list[float] = []
        self.guard_rollbacks = 0  # consecutive explosion rollbacks without a clean epoch between them
        self.rollbacks = 0
        self.resumed = False
        self.last_hook_ms = 0.0
        self.last_hook_cpu_ms = 0.0
        self.cache = ckpt.CheckpointCache(config.fast_rollback_cache)
        # the ranks of a data-parallel run; only rank 0 writes events and checkpoint files
        self.collective: Collective = collective or SingleProcess()
        self.boundary_clock = boundary_clock or BoundaryClock(self.collective.leads)  # Kasmina's, shared
        self.sink: EventSink | DiscardingSink = (
            EventSink(store, store.head_position()) if self.collective.leads else DiscardingSink()
        )

    def envelope(
        self, kind: str, payload: Any, epoch: int, identifier: str | None = None
    ) -> pb.EventEnvelope:
        return new_envelope(
            kind,
            run_stream(self.run_id),
            payload,
            run_id=self.run_id,
            epoch=epoch,
            correlation_id=self.run_id,
            source=hook.SOURCE,
            event_id=identifier or event_id(self.run_id, self.generation, epoch, kind),
        )

    # ------------------------------------------------------------------ start and resume

    def start(self) -> None:
        """Record the start of a new run."""
        self.sink.emit([self.envelope("RunStarted", self._run_started(resumed=False), 0)])

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
            lifecycle=self.kasmina.config.lifecycle.to_pb(),
            controller_config_json=self.controller_config_json,
        )

    def resume(self, state: RunState) -> None:
        """Continue from the log: the last committed checkpoint, or a rollback that was pending (if the run
        signed it: an unsigned or forged RollbackRequested in the log is refused, not applied)."""
        self.resumed = True
        self.generation = state.generation
        started = self._run_started(resumed=True)
        self.sink.emit([self.envelope("RunStarted", started, state.epoch, identifier=new_event_id())])
        pending = state.pending_rollback
        if pending is not None and rollback.recorded_request(self, state) is not None:
            self.epoch = state.epoch
            rollback.apply(self, pending.target_epoch, pending.position, "resume", time.perf_counter(), state)
        elif state.checkpoints:
            record = state.checkpoints[-1]
            self.restore(ckpt.deserialize(ckpt.read_file(self.data_dir, record.path, record.content_hash)))

    # ------------------------------------------------------------------ the loop

    def run(self) -> RunSummary:
        self.progress.on_start(self.config.epochs, self.epoch)
        try:
            self.collective.barrier(self.epoch)  # every rank built; then the ranks must agree
            boundary.agree(self)
            while self.epoch < self.config.epochs:
                self.run_epoch()
            return self.finish()
        except BaseException as exc:
            self.fail(exc)
            raise
        finally:
            for close in self.closing:
                close()

    def run_epoch(self) -> EpochMeasurements:
        started = time.perf_counter()
        epoch = self.epoch + 1
        final = epoch == self.config.epochs
        splits = self.splits

        # train, then validate (and test after the last epoch)
        self.headroom.activate(self.controller.measures_headroom)  # the controller may have been swapped
        order = epoch_order(self.config.seed, epoch, len(splits.train), self.config.epoch_examples)
        self._schedule_host_lr(epoch)
        train_loss, train_correct, grad_norm, steps, trained = boundary.train_share(self, order, epoch)
        self.global_step += steps
        val_loss, val_correct = evaluate(self.model, self.loss_fn, splits.validation)
        test_correct = (
            evaluate(self.model, self.loss_fn, splits.test)[1]
            if final
            else torch.zeros((), device=self.device)
        )
        sums = [train_loss, train_correct, val_loss, val_correct, grad_norm, test_correct]
        sizes = (trained, len(splits.validation), len(splits.test))
        measured = measure(epoch, sums, sizes, final, (time.perf_counter() - started) * 1000)
        self.epoch = epoch

        # the seed lifecycle's own step (gates, alpha ramps, probes) belongs to validation, before the hook
        seed_events = self.kasmina.end_epoch(
            epoch,
            SeedMeasurements(measured.validation_loss, measured.validation_accuracy, measured.training_loss),
            self._validation,
        )

        # the end-of-epoch hook: assembly, controller, command, guard (rank 0's decision, every rank's)
        events, pending, rolls_back = boundary.decide_and_share(self, measured, seed_events)
        metrics.TRAINING_LOSS.set(measured.training_loss)
        metrics.VALIDATION_ACCURACY.set(measured.validation_accuracy)

        # a rollback, or the epoch's events (with a checkpoint every checkpoint_every epochs)
        if rolls_back:
            self.sink.emit(events)
            self.progress.on_epoch(measured, self.seeds_by_stage())
            result = boundary.roll_back(self, pending)
            boundary.agree(self)
            self.progress.on_rollback(result)
        else:
            self.loss_history = rollback.loss_reference(
                self.loss_history, measured.training_loss, events, self.config.loss_window
            )
            self.guard_rollbacks = 0
            boundary.agree(self)  # every rank applied the decision: rank 0 may checkpoint
            if epoch % self.config.checkpoint_every == 0 or final:
                self.checkpoint(events)
            else:
                self.sink.emit(events)
            self.progress.on_epoch(measured, self.seeds_by_stage())
        metrics.EPOCHS.inc()
        metrics.EPOCH_SECONDS.observe(time.perf_counter() - started)
        return measured

    def _schedule_host_lr(self, epoch: int) -> None:
        """The host group's rate for this epoch (the seeds' groups are Kasmina's): the schedule's step from
        the last epoch's factor to this one's, on the rate the group has. A resumed or rolled-back run has
        the rate its checkpoint saved, so each epoch trains at the same rate; a rate changed from outside
        (a drill's spike) keeps its change. "constant" leaves the rate as it is."""
        host = self.optimizer.param_groups[0]
        host.setdefault("initial_lr", self.config.learning_rate)
        schedule, epochs = self.config.lr_schedule, self.config.epochs
        host["lr"] *= lr_factor(schedule, epoch, 0, epochs) / lr_factor(schedule, epoch - 1, 0, epochs)

    def _validation(self) -> Evaluation:
        """Kasmina's probe: the validation pass with the slots as it has set them, per example."""
        losses, correct = example_losses(self.model, self.splits.validation)
        size = len(self.splits.validation)
        return Evaluation(float(losses.sum()) / size, float(correct) / size, losses)

    def seeds_by_stage(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for state in self.kasmina.state.slots:
            name = stage_name(state.stage)
            counts[name] = counts.get(name, 0) + 1
        return counts

    def log_state(self) -> RunState:
        return fold(self.store.read_stream(run_stream(self.run_id)))

    # ------------------------------------------------------------------ checkpoints (checkpointing.py)

    def components(self) -> dict[str, Any]:
        return checkpointing.components(self)

    def capture(self) -> dict[str, Any]:
        return checkpointing.capture(self)

    def checkpoint(self, epoch_events: Sequence[pb.EventEnvelope] = ()) -> ckpt.CachedCheckpoint:
        return checkpointing.commit(self, epoch_events)

    def restore(self, components: dict[str, Any]) -> None:
        checkpointing.restore(self, components)

    def rollback_to(self, target_epoch: int, reason: str, requested_by: str) -> RollbackResult:
        """Roll back now, between epochs (fast when the target is cached, else full from disk)."""
        mode = rollback.cached_mode(self.cache, target_epoch)
        request = RequestRollback(self.run_id, target_epoch, requested_by, reason, mode=mode, exact=False)
        granted = rollback.decide(self, request)
        return rollback.record_and_apply(self, rollback.Pending(granted, new_event_id(), "operator"))

    # ------------------------------------------------------------------ the end (ending.py)

    def finish(self) -> RunSummary:
        return ending.finish(self)

    def fail(self, exc: BaseException) -> None:
        ending.fail(self, exc)


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
