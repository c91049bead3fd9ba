"""Rollback of a live run: who may ask (the loss guard, the controller, an operator), and how it is applied.

Every request goes through the run aggregate's `decide_rollback` (one rule: the run is running and a
checkpoint of the current timeline is there to return to). A granted request is appended as
RollbackRequested and flushed; the run then restores the checkpoint at or before the target, from the
in-memory cache when its bytes match the log's hash (fast) or from its file (full), and appends
RollbackCompleted with the range of positions it supersedes. A resumed run finishes a rollback that was
requested but not completed before the crash.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from domains.tolaria import checkpoint as ckpt
from domains.tolaria import control, metrics
from domains.tolaria.aggregate import (
    GUARD,
    IdenticalReplay,
    RequestRollback,
    RollbackRejected,
    RunState,
    decide_rollback,
    event_id,
    run_stream,
)
from domains.tolaria.aggregate import mode_name as mode_label
from domains.tolaria.loop import EpochMeasurements
from leyline import decode_envelope, decode_payload, pb
from leyline.errors import DecodeError, SignatureError
from leyline.signing import SIGNATURE_CODES

if TYPE_CHECKING:
    from domains.tolaria.config import RunConfig
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
    delivery: bytes | None = None  # an operator's control file as it was taken


def cached_mode(cache: ckpt.CheckpointCache, target_epoch: int) -> int:
    """The mode a rollback to this epoch runs in: fast when its checkpoint is cached."""
    return pb.ROLLBACK_MODE_FAST if cache.get(target_epoch) is not None else pb.ROLLBACK_MODE_FULL


def request_id(trainer: Trainer, epoch: int) -> str:
    return event_id(trainer.run_id, trainer.generation, epoch, "RollbackRequested")


def decide(trainer: Trainer, request: RequestRollback) -> pb.RollbackRequested:
    """decide_rollback against the run as the log records it, once everything handed to the writer is
    there (the checkpoints and the rollbacks already done: a rollback is rare, the flush is cheap)."""
    trainer.sink.flush()
    return decide_rollback(trainer.log_state(), request)


def loss_reference(
    history: Sequence[float], training_loss: float, events: Sequence[pb.EventEnvelope], window: int
) -> list[float]:
    """The guard's recent losses after a clean epoch: this one's appended, unless a seed left the host at
    this boundary (culled): the host then computes another function, and the loss change it causes is the
    seed's doing, not an explosion of the host, so the reference starts again from the next epoch. Kept in
    the checkpoint, so a replay measures against the same reference."""
    if any(_culled(event) for event in events):
        return []
    return [*history, training_loss][-window:]


def _culled(envelope: pb.EventEnvelope) -> bool:
    if envelope.event_type != "SeedTransitioned":
        return False
    payload = decode_payload(envelope)
    return isinstance(payload, pb.SeedTransitioned) and payload.to_stage == pb.SEED_STAGE_CULLED


def exploded(training_loss: float, recent: Sequence[float], config: RunConfig) -> bool:
    """The guard's rule: a non-finite loss, or one above `loss_explosion_factor` × the recent mean and
    above `loss_explosion_floor` nats (a relative jump of a near-zero loss is noise, not an explosion)."""
    if not np.isfinite(training_loss):
        return True
    if not recent:
        return False
    mean = sum(recent) / len(recent)
    return training_loss > config.loss_explosion_factor * mean and training_loss > config.loss_explosion_floor


def guard(trainer: Trainer, m: EpochMeasurements) -> Pending | None:
    """Loss explosion (non-finite, or above both factor × the recent mean and the absolute floor): fast
    rollback to the newest checkpoint."""
    if not exploded(m.training_loss, trainer.loss_history, trainer.config):
        return None
    recent = trainer.loss_history
    mean = sum(recent) / len(recent) if recent else float("nan")
    latest = trainer.cache.latest()
    if latest is None or trainer.guard_rollbacks >= trainer.config.max_guard_rollbacks:
        raise RunError(
            f"training loss exploded at epoch {m.epoch} ({m.training_loss:.4g}) and no rollback is left "
            f"(cached checkpoints: {len(trainer.cache)}, rollbacks in a row: {trainer.guard_rollbacks})"
        )
    reason = f"loss explosion at epoch {m.epoch}: {m.training_loss:.4g} vs recent mean {mean:.4g}"
    request = RequestRollback(
        trainer.run_id,
        latest.epoch,
        GUARD,
        reason,
        mode=pb.ROLLBACK_MODE_FAST,
        from_epoch=m.epoch,
        repeatable=False,
    )
    try:
        granted = decide(trainer, request)
    except IdenticalReplay as exc:
        raise RunError(
            f"training loss exploded at epoch {m.epoch} ({m.training_loss:.4g}) again: {exc}"
        ) from None
    trainer.guard_rollbacks += 1
    return Pending(granted, request_id(trainer, m.epoch), trigger="guard")


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
        from_epoch=epoch,
        repeatable=False,  # what the controller asked for once, its replay would ask for again
    )
    return Pending(decide(trainer, request), request_id(trainer, epoch), trigger="controller")


class Refused(Exception):
    """A recorded or delivered rollback request the run does not apply; code as in CommandRejected."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def operator_request(trainer: Trainer, epoch: int) -> tuple[Pending | None, list[pb.EventEnvelope]]:
    """An operator's request delivered through the control directory: the granted rollback, or a
    CommandRejected on the run's stream for anything that is not a signed, fresh request for this run
    with a committed checkpoint at its epoch (the control file is removed either way; the run goes on)."""
    content = control.take(trainer.data_dir, trainer.run_id)
    if content is None:
        return None, []
    request_id = ""
    try:
        envelope = operator_envelope(trainer, content)
        request_id = envelope.event_id
        asked = decode_payload(envelope)
        if not isinstance(asked, pb.RollbackRequested) or asked.run_id != trainer.run_id:
            raise Refused("malformed", f"the request is not a rollback of run {trainer.run_id}")
        request = RequestRollback(
            trainer.run_id,
            asked.target_epoch,
            asked.requested_by or control.OPERATOR,
            asked.reason or "operator request",
            mode=cached_mode(trainer.cache, asked.target_epoch),
        )
        granted = decide(trainer, request)
    except Refused as exc:
        control.done(trainer.data_dir, trainer.run_id, content)
        return None, [refusal(trainer, request_id or content_id(content), exc.code, str(exc), epoch)]
    except (DecodeError, RollbackRejected) as exc:
        control.done(trainer.data_dir, trainer.run_id, content)
        code = "malformed" if isinstance(exc, DecodeError) else "no_checkpoint"
        return None, [refusal(trainer, request_id or content_id(content), code, str(exc), epoch)]
    return Pending(granted, request_id, trigger="operator", delivery=content), []


def operator_envelope(trainer: Trainer, content: bytes) -> pb.EventEnvelope:
    """The delivered envelope if it is a signed, fresh, never-seen RollbackRequested for this run's
    stream; Refused (or DecodeError) otherwise."""
    if len(content) > control.CONTENT_LIMIT:
        raise Refused("malformed", f"the control file is over {control.CONTENT_LIMIT} bytes")
    envelope = decode_envelope(content)
    if envelope.event_type != "RollbackRequested" or envelope.stream != run_stream(trainer.run_id):
        raise Refused("malformed", f"the request is not a RollbackRequested of run {trainer.run_id}")
    if not envelope.hmac:
        raise Refused("unsigned", "the request is not signed; `esper rollback` signs it with the keyring")
    check_signature(trainer, envelope, fresh=True)
    return envelope


def check_signature(trainer: Trainer, envelope: pb.EventEnvelope, fresh: bool = False) -> None:
    """The process's one Verifier on a request: its signature (and, for a delivery, freshness and nonce);
    Refused with the intake's code for a failure."""
    try:
        if fresh:
            trainer.verifier.verify(envelope)
        else:
            trainer.verifier.verify_recorded(envelope)
    except SignatureError as exc:
        raise Refused(SIGNATURE_CODES.get(type(exc), "bad_signature"), str(exc)) from None


def content_id(content: bytes) -> str:
    """A name for a request that has none of its own (an undecodable control file)."""
    return "control-" + hashlib.sha256(content).hexdigest()[:24]


def refusal(trainer: Trainer, request_id: str, code: str, reason: str, epoch: int) -> pb.EventEnvelope:
    """A rollback request the run refused, on the run's stream (the aggregate withdraws a pending one)."""
    rejected = pb.CommandRejected(command_id=request_id, reason=reason[:500], code=code)
    kind = f"RollbackRefused/{request_id}"
    return trainer.envelope(
        "CommandRejected", rejected, epoch, event_id(trainer.run_id, trainer.generation, epoch, kind)
    )


def recorded_request(trainer: Trainer, state: RunState) -> pb.EventEnvelope | None:
    """On resume: the pending rollback's RollbackRequested if it is authentic (signed by a key on the
    ring: the run signs every request it records); else it is refused with a CommandRejected and None."""
    pending = state.pending_rollback
    if pending is None:
        return None
    recorded = [
        e for e in trainer.store.read_stream(run_stream(trainer.run_id)) if e.event_id == pending.event_id
    ]
    try:
        if not recorded or not recorded[-1].hmac:
            raise Refused("unsigned", f"rollback request {pending.event_id} in the log is not signed")
        check_signature(trainer, recorded[-1])
    except Refused as exc:
        trainer.sink.emit([refusal(trainer, pending.event_id, exc.code, str(exc), state.epoch)])
        return None
    return recorded[-1]


def record_and_apply(trainer: Trainer, pending: Pending) -> RollbackResult:
    """Append the granted request, signed by the run, flush, and roll back to it."""
    started = time.perf_counter()
    requested = trainer.envelope("RollbackRequested", pending.request, trainer.epoch, pending.request_id)
    trainer.sink.emit([trainer.signer.sign(requested)])
    trainer.sink.flush()
    if pending.delivery is not None:
        control.done(trainer.data_dir, trainer.run_id, pending.delivery)
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
        trainer.restore(cached.restorable())
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
