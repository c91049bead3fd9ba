"""Rollback of a live run: who may ask (the loss guard, the controller, an operator), and how it is applied.

Every request goes through the run aggregate's `decide_rollback` (one rule: the run is running and a
checkpoint of the current timeline is there to return to). A granted request is appended as
RollbackRequested and flushed; the run then restores the checkpoint at or before the target, from the
in-memory cache when its bytes match the log's hash (fast) or from its file (full), and appends
RollbackCompleted with the range of positions it supersedes. A resumed run finishes a rollback that was
requested but not completed before the crash.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from domains.tolaria import checkpoint as ckpt
from domains.tolaria import control, metrics
from domains.tolaria.aggregate import (
    GUARD,
    RequestRollback,
    RollbackRejected,
    RunState,
    decide_rollback,
    event_id,
)
from domains.tolaria.aggregate import mode_name as mode_label
from domains.tolaria.loop import EpochMeasurements
from leyline import pb

if TYPE_CHECKING:
    from domains.tolaria.trainer import Trainer


class RunError(Exception):
    """A run that cannot start, resume or go on; the message says why."""


@dataclass
class RollbackResult:
    target_epoch: int
    mode: int
    duration_ms: float


@dataclass
class Pending:
    """A rollback granted at this boundary, to be recorded and applied before the next epoch."""

    request: pb.RollbackRequested
    request_id: str
    trigger: str  # "guard", "controller" or "operator" (the metrics label)
    delivery: control.RollbackDelivery | None = None


def cached_mode(cache: ckpt.CheckpointCache, target_epoch: int) -> int:
    """The mode a rollback to this epoch runs in: fast when its checkpoint is cached."""
    return pb.ROLLBACK_MODE_FAST if cache.get(target_epoch) is not None else pb.ROLLBACK_MODE_FULL


def request_id(trainer: Trainer, epoch: int) -> str:
    return event_id(trainer.run_id, trainer.generation, epoch, "RollbackRequested")


def decide(trainer: Trainer, request: RequestRollback) -> pb.RollbackRequested:
    """decide_rollback against the log, read only when the target is not in the cache."""
    state = trainer.log_state() if request.mode != pb.ROLLBACK_MODE_FAST else RunState()
    return decide_rollback(state, request)


def guard(trainer: Trainer, m: EpochMeasurements) -> Pending | None:
    """Loss explosion (non-finite, or above factor × the recent mean): fast rollback to the newest."""
    recent = trainer.loss_history
    mean = sum(recent) / len(recent) if recent else float("nan")
    exploded = not np.isfinite(m.training_loss) or (
        bool(recent) and m.training_loss > trainer.config.loss_explosion_factor * mean
    )
    if not exploded:
        return None
    latest = trainer.cache.latest()
    if latest is None or trainer.guard_rollbacks >= trainer.config.max_guard_rollbacks:
        raise RunError(
            f"training loss exploded at epoch {m.epoch} ({m.training_loss:.4g}) and no rollback is left "
            f"(cached checkpoints: {len(trainer.cache)}, rollbacks in a row: {trainer.guard_rollbacks})"
        )
    trainer.guard_rollbacks += 1
    reason = f"loss explosion at epoch {m.epoch}: {m.training_loss:.4g} vs recent mean {mean:.4g}"
    request = RequestRollback(trainer.run_id, latest.epoch, GUARD, reason, mode=pb.ROLLBACK_MODE_FAST)
    return Pending(decide(trainer, request), request_id(trainer, m.epoch), trigger="guard")


def controller_request(trainer: Trainer, command: pb.AdaptationCommand, epoch: int) -> Pending:
    """A controller's (verified) ROLLBACK command; RollbackRejected when there is nothing to return to."""
    target = command.rollback.target_epoch
    request = RequestRollback(
        trainer.run_id,
        target,
        command.issued_by or "controller",
        command.rollback.reason or f"controller command {command.command_id}",
        mode=cached_mode(trainer.cache, target),
        exact=False,
    )
    return Pending(decide(trainer, request), request_id(trainer, epoch), trigger="controller")


def operator_request(trainer: Trainer) -> Pending | None:
    """An operator's request delivered through the control directory (validated by `esper rollback`)."""
    delivery = control.take(trainer.data_dir, trainer.run_id)
    if delivery is None:
        return None
    target = delivery.request.target_epoch
    request = RequestRollback(
        trainer.run_id,
        target,
        delivery.request.requested_by or "operator",
        delivery.request.reason or "operator request",
        mode=cached_mode(trainer.cache, target),
        exact=False,  # an earlier rollback may have dropped the epoch since: return to the newest before it
    )
    try:
        granted = decide(trainer, request)
    except RollbackRejected as exc:
        raise RunError(f"operator rollback request {delivery.request_id}: {exc}") from None
    return Pending(granted, delivery.request_id, trigger="operator", delivery=delivery)


def record_and_apply(trainer: Trainer, pending: Pending) -> RollbackResult:
    """Append the granted request, flush, and roll back to it."""
    started = time.perf_counter()
    requested = trainer.envelope("RollbackRequested", pending.request, trainer.epoch, pending.request_id)
    trainer.sink.emit([requested])
    trainer.sink.flush()
    if pending.delivery is not None:
        control.done(trainer.data_dir, pending.delivery)
    state = trainer.log_state()
    if state.pending_rollback is None:
        raise RunError(f"rollback request {pending.request_id} is not in the log after a flush")
    target, position = pending.request.target_epoch, state.pending_rollback.position
    return apply(trainer, target, position, pending.trigger, started, state)


def apply(
    trainer: Trainer, target_epoch: int, request_position: int, trigger: str, started: float, state: RunState
) -> RollbackResult:
    """Restore the checkpoint at or before target_epoch and append RollbackCompleted."""
    record = state.checkpoint_at_or_before(target_epoch)
    if record is None:
        raise RunError(f"run {trainer.run_id} has no committed checkpoint at or before epoch {target_epoch}")
    cached = trainer.cache.get(record.epoch)
    written = cached.serialized if cached is not None else None
    request_epoch = trainer.epoch
    if cached is not None and written is not None and written.sha256 == record.content_hash:
        mode = pb.ROLLBACK_MODE_FAST
        trainer.restore(ckpt.clone(cached.components))
    else:
        mode = pb.ROLLBACK_MODE_FULL
        trainer.restore(ckpt.deserialize(ckpt.read_file(trainer.data_dir, record.path, record.content_hash)))
    trainer.cache.discard_after(record.epoch)
    duration_ms = (time.perf_counter() - started) * 1000
    completed = pb.RollbackCompleted(
        run_id=trainer.run_id,
        target_epoch=record.epoch,
        target_position=record.position,
        checkpoint_hash=record.content_hash,
        mode=mode,
        duration_ms=duration_ms,
        superseded_from=record.position + 1,
        superseded_to=request_position - 1,
    )
    trainer.sink.emit([trainer.envelope("RollbackCompleted", completed, request_epoch)])
    trainer.generation = state.generation + 1
    trainer.rollbacks += 1
    metrics.ROLLBACKS.labels(mode=mode_label(mode), trigger=trigger).inc()
    metrics.ROLLBACK_SECONDS.labels(mode=mode_label(mode)).observe(duration_ms / 1000)
    return RollbackResult(record.epoch, mode, duration_ms)
