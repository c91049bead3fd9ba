"""The run aggregate: the state of one run folded from its `run-<run_id>` stream, and its decisions.

Pure: `evolve(state, envelope) -> state` and `decide_rollback(state, request) -> RollbackRequested`.
The state says which checkpoints are in the current timeline (a rollback drops those after its target),
how many rollbacks have completed (the *generation*, part of every deterministic event id so that epochs
re-run after a rollback are new events and epochs re-run after a crash are the same events), and whether a
requested rollback is still pending.

What a run learns from a rollback lives here, outside the checkpoints a rollback restores: every completed
rollback is remembered (`rolled_back`: from which epoch, to which checkpoint, asked by whom), so a replay
that would be identical is never retried. Training is deterministic: rolling back again from the same epoch
to the same checkpoint would replay the same epochs and meet the same condition, forever.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from enum import Enum

from leyline import decode_payload, pb, stream_name
from leyline.lifecycle import LifecycleConfig


class RunStatus(Enum):
    ABSENT = "absent"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True)
class CheckpointRecord:
    epoch: int
    content_hash: str
    path: str
    position: int  # global position of its CheckpointCommitted event


@dataclass(frozen=True)
class PendingRollback:
    target_epoch: int
    mode: int  # pb.RollbackMode
    position: int  # global position of the RollbackRequested event
    requested_by: str = ""
    event_id: str = ""  # of the RollbackRequested event; a CommandRejected naming it withdraws it


@dataclass(frozen=True)
class RolledBack:
    """A completed rollback: asked for at the end of from_epoch, it restored target_epoch's checkpoint."""

    from_epoch: int
    target_epoch: int
    requested_by: str


@dataclass(frozen=True)
class RunState:
    run_id: str = ""
    status: RunStatus = RunStatus.ABSENT
    config_json: str = ""
    lifecycle: LifecycleConfig | None = None  # the lifecycle limits the run started with
    controller_config_json: str = ""  # the controller's own configuration it started with
    epoch: int = 0  # last completed epoch of the current timeline
    generation: int = 0  # rollbacks completed
    checkpoints: tuple[CheckpointRecord, ...] = ()  # current timeline, ascending epoch
    pending_rollback: PendingRollback | None = None
    last_position: int = 0
    starts: int = 0  # RunStarted events (the first one and one per resume)
    test_accuracy: float = 0.0
    model_sha256: str = ""
    error: str = ""
    superseded: tuple[tuple[int, int], ...] = field(default=())  # position ranges rolled back
    rolled_back: tuple[RolledBack, ...] = ()  # every completed rollback, whatever timeline it was in

    def checkpoint_at_or_before(self, epoch: int) -> CheckpointRecord | None:
        eligible = [c for c in self.checkpoints if c.epoch <= epoch]
        return eligible[-1] if eligible else None

    def has_rolled_back(self, from_epoch: int, target_epoch: int) -> bool:
        """Whether the run already rolled back from this epoch to this checkpoint (an identical replay)."""
        return any(r.from_epoch == from_epoch and r.target_epoch == target_epoch for r in self.rolled_back)


def mode_name(mode: int) -> str:
    """A RollbackCompleted mode as the CLI and the metrics label show it."""
    return "fast" if mode == pb.ROLLBACK_MODE_FAST else "full"


def run_stream(run_id: str) -> str:
    return stream_name("run", run_id)


def event_id(run_id: str, generation: int, epoch: int, kind: str) -> str:
    """Deterministic id of a run event: a re-append after a crash is absorbed by the store's idempotency."""
    return hashlib.sha256(f"{run_id}/{generation}/{epoch}/{kind}".encode()).hexdigest()[:32]


def evolve(state: RunState, envelope: pb.EventEnvelope) -> RunState:
    payload = decode_payload(envelope)
    position = envelope.global_position
    state = dataclasses.replace(state, last_position=max(state.last_position, position))
    if isinstance(payload, pb.RunStarted):
        return dataclasses.replace(
            state,
            run_id=payload.run_id,
            status=RunStatus.RUNNING,
            config_json=state.config_json or payload.config_json,
            lifecycle=state.lifecycle
            or (LifecycleConfig.from_pb(payload.lifecycle) if payload.HasField("lifecycle") else None),
            controller_config_json=state.controller_config_json or payload.controller_config_json,
            starts=state.starts + 1,
        )
    if isinstance(payload, pb.EpochCompleted):
        return dataclasses.replace(state, epoch=payload.state.epoch)
    if isinstance(payload, pb.CheckpointCommitted):
        manifest = payload.manifest
        record = CheckpointRecord(manifest.epoch, manifest.content_hash, manifest.path, position)
        kept = tuple(c for c in state.checkpoints if c.epoch < manifest.epoch)
        return dataclasses.replace(state, checkpoints=(*kept, record))
    if isinstance(payload, pb.RollbackRequested):
        pending = PendingRollback(
            payload.target_epoch, payload.mode, position, payload.requested_by, envelope.event_id
        )
        return dataclasses.replace(state, pending_rollback=pending)
    if isinstance(payload, pb.CommandRejected):
        # a recorded request the run refused to apply (on resume: it does not verify)
        withdrawn = (
            state.pending_rollback is not None and state.pending_rollback.event_id == payload.command_id
        )
        return dataclasses.replace(state, pending_rollback=None) if withdrawn else state
    if isinstance(payload, pb.RollbackCompleted):
        requested_by = state.pending_rollback.requested_by if state.pending_rollback else ""
        rolled_back = RolledBack(envelope.epoch, payload.target_epoch, requested_by)
        return dataclasses.replace(
            state,
            epoch=payload.target_epoch,
            generation=state.generation + 1,
            checkpoints=tuple(c for c in state.checkpoints if c.epoch <= payload.target_epoch),
            pending_rollback=None,
            superseded=(*state.superseded, (payload.superseded_from, payload.superseded_to)),
            rolled_back=(*state.rolled_back, rolled_back),
        )
    if isinstance(payload, pb.RunCompleted):
        return dataclasses.replace(
            state,
            status=RunStatus.COMPLETED,
            test_accuracy=payload.test_accuracy,
            model_sha256=payload.model_sha256,
        )
    if isinstance(payload, pb.RunFailed):
        return dataclasses.replace(state, status=RunStatus.FAILED, error=payload.error)
    return state


def fold(envelopes: list[pb.EventEnvelope], state: RunState | None = None) -> RunState:
    state = state or RunState()
    for envelope in envelopes:
        state = evolve(state, envelope)
    return state


class RollbackRejected(ValueError):
    """A rollback that cannot be applied; the message says why and what would work."""


@dataclass(frozen=True)
class RequestRollback:
    """A rollback asked for by an operator (`esper rollback`), the controller or the loss guard."""

    run_id: str
    target_epoch: int
    requested_by: str
    reason: str
    # UNKNOWN: asked from outside the run (the live run picks the mode); FAST: the live run holds the
    # target in its checkpoint cache, so nothing in the log needs checking; FULL: from a committed file.
    mode: int = pb.ROLLBACK_MODE_UNKNOWN
    exact: bool = True  # a checkpoint at exactly target_epoch (an operator's); else the newest at or before
    # The epoch at whose end the run would roll back; with `repeatable` False (the guard's, the
    # controller's) a rollback the run already did from this epoch to the same checkpoint is refused.
    from_epoch: int = 0
    repeatable: bool = True


class IdenticalReplay(RollbackRejected):
    """The run already rolled back from this epoch to this checkpoint: the replay would be the same."""


def decide_rollback(state: RunState, request: RequestRollback) -> pb.RollbackRequested:
    """The one rule for every rollback (operator, controller, guard): the run is running, a checkpoint of
    the current timeline is there to return to, and (unless the request is repeatable) the run has not
    already rolled back from this epoch to it; the RollbackRequested to record, or RollbackRejected."""
    if request.mode != pb.ROLLBACK_MODE_FAST:
        _check_target(state, request)
    if not request.repeatable:
        record = state.checkpoint_at_or_before(request.target_epoch)
        target = record.epoch if record is not None else request.target_epoch
        if state.has_rolled_back(request.from_epoch, target):
            raise IdenticalReplay(
                f"run {request.run_id} already rolled back from epoch {request.from_epoch} to epoch "
                f"{target}; training is deterministic, so the replay would end here the same way"
            )
    return pb.RollbackRequested(
        run_id=request.run_id,
        target_epoch=request.target_epoch,
        mode=request.mode,  # type: ignore[arg-type]
        reason=request.reason,
        requested_by=request.requested_by,
    )


def _check_target(state: RunState, request: RequestRollback) -> None:
    if state.status is RunStatus.ABSENT:
        raise RollbackRejected(f"run {request.run_id} does not exist in this log")
    if state.status is not RunStatus.RUNNING:
        raise RollbackRejected(
            f"run {request.run_id} is {state.status.value}; only a running run can roll back"
        )
    record = state.checkpoint_at_or_before(request.target_epoch)
    if record is None or (request.exact and record.epoch != request.target_epoch):
        available = ", ".join(str(c.epoch) for c in state.checkpoints) or "none yet"
        at = "at" if request.exact else "at or before"
        raise RollbackRejected(
            f"run {request.run_id} has no committed checkpoint {at} epoch {request.target_epoch}; "
            f"committed epochs: {available}"
        )
