"""Compile jobs as an event-sourced aggregate: `decide(state, command) -> events`, `evolve(state, event)`.

A job lives on stream `compile-<job_id>`; its id is derived from what it compiles (blueprint, resolved
parameters, slot kind and shape, strategy), so asking twice for the same artifact finds the same job.

    Queued → Started(1) → Succeeded                      (ArtifactStored on `artifact-<sha256>` beside it)
                        → Failed(1, will_retry) → Started(2) → …
                        → Failed(n, no retry)            (AlertFired on `alert-tezzeret_compile_failed`)

A Started with no outcome means the process died during the attempt; starting the job again first
records that attempt as Failed ("interrupted"), so the log tells what happened and a job that kills its
process every time still runs out of attempts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum

from google.protobuf.message import Message

from leyline import pb, stream_name

ALERT_NAME = "tezzeret_compile_failed"
CATEGORY = "compile"  # a job's stream: compile-<job_id>
EXPORT = "export"
AOT_INDUCTOR = "aot_inductor"
DEVICES = ("cpu", "cuda")
DEFAULT_STRATEGY = EXPORT
# A job's strategy names the device an AOTInductor package is built for: its code only runs there.
STRATEGIES = (EXPORT, *(f"{AOT_INDUCTOR}:{device}" for device in DEVICES))
SELECTIONS = ("auto", EXPORT, AOT_INDUCTOR)


def choose_strategy(selection: str, device: str) -> str:
    """The strategy for a selection on a device. "auto" picks AOTInductor where it pays, on CUDA; on CPU
    its compile (tens of seconds per template against a fraction of a second for export) does not pay,
    see `esper bench blueprints`."""
    if selection not in SELECTIONS:
        raise ValueError(f"unknown compile strategy {selection!r}; choose one of: {', '.join(SELECTIONS)}")
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of: {', '.join(DEVICES)}")
    if selection == EXPORT or (selection == "auto" and device != "cuda"):
        return EXPORT
    return f"{AOT_INDUCTOR}:{device}"


def strategy_device(strategy: str) -> str | None:
    """The device an AOTInductor strategy compiles for; None for export."""
    kind, _, device = strategy.partition(":")
    return device if kind == AOT_INDUCTOR else None


def job_stream(job_id: str) -> str:
    return stream_name(CATEGORY, job_id)


class JobError(Exception):
    """A command that does not apply to the job's current state."""


@dataclass(frozen=True)
class CompileSpec:
    """What to compile: parameters must already be validated and complete (Karn's defaults filled in)."""

    blueprint_id: str
    parameters: tuple[tuple[str, float], ...]
    slot_kind: int
    slot_shape: tuple[int, ...]
    strategy: str = DEFAULT_STRATEGY

    @classmethod
    def of(
        cls,
        blueprint_id: str,
        parameters: Mapping[str, float],
        slot_kind: int,
        slot_shape: Sequence[int],
        strategy: str = DEFAULT_STRATEGY,
    ) -> CompileSpec:
        return cls(
            blueprint_id,
            tuple(sorted((name, float(value)) for name, value in parameters.items())),
            int(slot_kind),
            tuple(int(d) for d in slot_shape),
            strategy,
        )

    @property
    def job_id(self) -> str:
        text = json.dumps(
            [self.blueprint_id, self.parameters, self.slot_kind, self.slot_shape, self.strategy],
            separators=(",", ":"),
        )
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    @property
    def stream(self) -> str:
        return job_stream(self.job_id)

    def parameter_map(self) -> dict[str, float]:
        return dict(self.parameters)


class Status(Enum):
    ABSENT = "absent"
    QUEUED = "queued"
    RUNNING = "running"
    RETRY_WAIT = "retry_wait"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (Status.SUCCEEDED, Status.FAILED)


@dataclass(frozen=True)
class JobState:
    job_id: str
    spec: CompileSpec | None = None
    max_attempts: int = 0
    status: Status = Status.ABSENT
    attempts: int = 0  # attempts started
    artifact_hash: str = ""
    last_error: str = ""
    retry_after_ms: int = 0
    version: int = 0  # stream version of the last event applied


@dataclass(frozen=True)
class Backoff:
    """Delay before attempt n+1 after attempt n failed: base · 2^(n-1), capped."""

    base_ms: int = 200
    cap_ms: int = 30_000

    def delay_ms(self, attempt: int) -> int:
        return int(min(self.cap_ms, self.base_ms * 2 ** max(0, attempt - 1)))


DEFAULT_BACKOFF = Backoff()


@dataclass(frozen=True)
class Queue:
    spec: CompileSpec
    max_attempts: int


@dataclass(frozen=True)
class Start:
    pass


@dataclass(frozen=True)
class Fail:
    error: str


@dataclass(frozen=True)
class Succeed:
    artifact_hash: str
    size_bytes: int
    duration_ms: float


Command = Queue | Start | Fail | Succeed
PendingEvent = tuple[str, str, Message]  # (stream, event_type, payload)


def decide(state: JobState, command: Command, backoff: Backoff = DEFAULT_BACKOFF) -> list[PendingEvent]:
    stream = job_stream(state.job_id)
    if isinstance(command, Queue):
        if state.status is not Status.ABSENT:
            return []
        spec = command.spec
        if spec.job_id != state.job_id:
            raise JobError(f"spec of job {spec.job_id} queued on job {state.job_id}")
        queued = pb.CompileJobQueued(
            job_id=state.job_id,
            blueprint_id=spec.blueprint_id,
            parameters=dict(spec.parameters),
            slot_shape=list(spec.slot_shape),
            slot_kind=spec.slot_kind,  # type: ignore[arg-type]
            strategy=spec.strategy,
            max_attempts=command.max_attempts,
        )
        return [(stream, "CompileJobQueued", queued)]
    if state.status in (Status.ABSENT, Status.SUCCEEDED, Status.FAILED):
        raise JobError(f"job {state.job_id} is {state.status.value}: cannot {type(command).__name__.lower()}")
    if isinstance(command, Start):
        events: list[PendingEvent] = []
        if state.status is Status.RUNNING:
            events = _failure(state, "interrupted: the process stopped during this attempt", backoff)
            if not _will_retry(state):
                return events
        started = pb.CompileJobStarted(job_id=state.job_id, attempt=state.attempts + 1)
        return [*events, (stream, "CompileJobStarted", started)]
    if state.status is not Status.RUNNING:
        raise JobError(f"job {state.job_id} has no attempt running ({state.status.value})")
    if isinstance(command, Fail):
        return _failure(state, command.error, backoff)
    assert state.spec is not None
    stored = pb.ArtifactStored(
        artifact_hash=command.artifact_hash,
        blueprint_id=state.spec.blueprint_id,
        size_bytes=command.size_bytes,
        strategy=state.spec.strategy,
        slot_shape=list(state.spec.slot_shape),
        job_id=state.job_id,
    )
    succeeded = pb.CompileJobSucceeded(
        job_id=state.job_id,
        attempt=state.attempts,
        artifact_hash=command.artifact_hash,
        duration_ms=command.duration_ms,
    )
    return [
        (stream_name("artifact", command.artifact_hash), "ArtifactStored", stored),
        (stream, "CompileJobSucceeded", succeeded),
    ]


def _will_retry(state: JobState) -> bool:
    return state.attempts < state.max_attempts


def _failure(state: JobState, error: str, backoff: Backoff) -> list[PendingEvent]:
    retry = _will_retry(state)
    failed = pb.CompileJobFailed(
        job_id=state.job_id,
        attempt=state.attempts,
        error=error,
        will_retry=retry,
        retry_after_ms=backoff.delay_ms(state.attempts) if retry else 0,
    )
    events: list[PendingEvent] = [(job_stream(state.job_id), "CompileJobFailed", failed)]
    if not retry:
        blueprint = state.spec.blueprint_id if state.spec else ""
        alert = pb.Alert(
            name=ALERT_NAME,
            severity="critical",
            summary=f"compile job {state.job_id} ({blueprint}) failed {state.attempts} times: {error}",
            labels={"job_id": state.job_id, "blueprint_id": blueprint},
            value=float(state.attempts),
        )
        events.append((stream_name("alert", ALERT_NAME), "AlertFired", alert))
    return events


def evolve(state: JobState, payload: Message) -> JobState:
    """Apply one event of the job's own stream (events on other streams leave the job unchanged)."""
    version = state.version + 1
    if isinstance(payload, pb.CompileJobQueued):
        spec = CompileSpec.of(
            payload.blueprint_id, payload.parameters, payload.slot_kind, payload.slot_shape, payload.strategy
        )
        return replace(
            state, spec=spec, max_attempts=payload.max_attempts, status=Status.QUEUED, version=version
        )
    if isinstance(payload, pb.CompileJobStarted):
        return replace(state, status=Status.RUNNING, attempts=payload.attempt, version=version)
    if isinstance(payload, pb.CompileJobFailed):
        status = Status.RETRY_WAIT if payload.will_retry else Status.FAILED
        return replace(
            state,
            status=status,
            last_error=payload.error,
            retry_after_ms=payload.retry_after_ms,
            version=version,
        )
    if isinstance(payload, pb.CompileJobSucceeded):
        return replace(state, status=Status.SUCCEEDED, artifact_hash=payload.artifact_hash, version=version)
    return state
