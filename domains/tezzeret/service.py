"""Running compile jobs against the event store and Urza's library.

Every step of a job is appended with an exact expected version on its stream, so two workers can never
both record an attempt (the second one's append fails with WrongExpectedVersion); the artifact is written
(atomically, content-addressed) before the event that names it, so a crash leaves at worst a file no event
names yet, which the resumed job writes again with the same bytes (same path: no duplicate). `resume()`
finds unfinished jobs from the log after a restart.

One process at a time runs a job: `run` holds the job's lock file (`locks/<job_id>.lock` under the
library's root, an flock the kernel releases when its holder dies) from reading the job's state to its
outcome. A job the log shows RUNNING while its lock is free is then one whose process died, and only that
is recorded as an interrupted attempt. Without the lock, two live processes asking for one artifact (two
episodes on one log, a run's compile-ahead child and its training thread) each read the other's attempt
as interrupted: a job that compiles in a second used up its attempts in three and failed for good, and
every later graft of that blueprint on the log was refused (G0), depending on which process got there
first. Processes on other hosts sharing a PostgreSQL log share no lock: run their compiles on one host.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from domains.karn import catalog
from domains.tezzeret import metrics
from domains.tezzeret.compiler import compile_artifact
from domains.tezzeret.jobs import (
    CATEGORY,
    DEFAULT_STRATEGY,
    STRATEGIES,
    Backoff,
    Command,
    CompileSpec,
    Fail,
    JobState,
    Queue,
    Start,
    Status,
    Succeed,
    decide,
    evolve,
    job_stream,
)
from domains.urza.library import ArtifactLibrary, UrzaError, sha256_hex
from eventstore import EventFilter, EventStore, WrongExpectedVersion, exact
from leyline import decode_payload, new_envelope, pb

SOURCE = "tezzeret"
JOB_EVENTS = frozenset({"CompileJobQueued", "CompileJobStarted", "CompileJobFailed", "CompileJobSucceeded"})
DEFAULT_MAX_ATTEMPTS = 3
CONCURRENT_ATTEMPTS = 3  # a job another process queues under us: re-read and go on, this many times at most
DEFAULT_CONV_SHAPE = (8, 8, 8)  # [C, H, W]: the digits host's feature maps
DEFAULT_SEQUENCE_SHAPE = (16, 32)  # [T, D]
DEFAULT_WIDEN_SHAPE = (1, 8, 8, 10)  # [C, H, W, K]: the digits image, read into 10 logits
LOCKS = "locks"  # the directory of the jobs' lock files, under the library's root


class RestoreMismatch(UrzaError):
    pass


class FailureHook(Protocol):
    """Called before each attempt; raising makes the attempt fail (fault drills and tests)."""

    def __call__(self, job_id: str, attempt: int) -> None: ...


class FailFirst:
    """A drill hook: the first `failures` attempts of every job raise."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    def __call__(self, job_id: str, attempt: int) -> None:
        if attempt <= self.failures:
            raise RuntimeError(f"injected compile failure (attempt {attempt} of the first {self.failures})")


def resolve_spec(
    blueprint_id: str,
    parameters: Mapping[str, float],
    slot_kind: int,
    slot_shape: Sequence[int],
    strategy: str = DEFAULT_STRATEGY,
) -> CompileSpec:
    """A validated spec (Karn's range and slot checks; defaults filled in)."""
    resolved = catalog.validate_parameters(blueprint_id, parameters)
    shape = catalog.validate_slot(blueprint_id, slot_kind, slot_shape)
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown compile strategy {strategy!r}; choose one of: {', '.join(STRATEGIES)}")
    return CompileSpec.of(blueprint_id, resolved, slot_kind, shape, strategy)


def catalogue_specs(
    conv_shape: Sequence[int] = DEFAULT_CONV_SHAPE,
    sequence_shape: Sequence[int] = DEFAULT_SEQUENCE_SHAPE,
    blueprint_ids: Iterable[str] | None = None,
    parameters: Mapping[str, float] | None = None,
    strategy: str = DEFAULT_STRATEGY,
    widen_shape: Sequence[int] = DEFAULT_WIDEN_SHAPE,
) -> list[CompileSpec]:
    """One spec per blueprint and slot kind it supports (the whole catalogue by default)."""
    shapes: dict[int, Sequence[int]] = {
        pb.SLOT_KIND_CONV2D: conv_shape,
        pb.SLOT_KIND_SEQUENCE: sequence_shape,
        pb.SLOT_KIND_WIDEN: widen_shape,
    }
    ids = list(blueprint_ids) if blueprint_ids is not None else list(catalog.BY_ID)
    return [
        resolve_spec(blueprint_id, parameters or {}, kind, shapes[kind], strategy)
        for blueprint_id in ids
        for kind in catalog.get(blueprint_id).kinds
    ]


def read_jobs(store: EventStore) -> dict[str, JobState]:
    """Every compile job in the log, folded from its events."""
    states: dict[str, JobState] = {}
    job_filter = EventFilter(categories=frozenset({CATEGORY}), event_types=JOB_EVENTS)
    for envelope in store.read_all(event_filter=job_filter):
        job_id = envelope.stream.split("-", 1)[1]
        state = states.get(job_id, JobState(job_id))
        states[job_id] = evolve(state, decode_payload(envelope))
    return states


@contextlib.contextmanager
def job_lock(root: Path, job_id: str) -> Iterator[None]:
    """Hold the job's lock file under `root` (waiting for a process that holds it) for the block."""
    directory = Path(root) / LOCKS
    directory.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(directory / f"{job_id}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def _deterministic_id(*parts: object) -> str:
    return uuid.uuid5(uuid.NAMESPACE_OID, "|".join(str(part) for part in parts)).hex


class Tezzeret:
    def __init__(
        self,
        store: EventStore,
        library: ArtifactLibrary,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        failure_hook: FailureHook | None = None,
        compile_fn: Callable[[CompileSpec], bytes] = compile_artifact,
    ) -> None:
        self.store = store
        self.library = library
        self.max_attempts = max_attempts
        self.backoff = backoff or Backoff()
        self.sleep = sleep
        self.failure_hook = failure_hook
        self.compile_fn = compile_fn

    def state(self, job_id: str) -> JobState:
        state = JobState(job_id)
        for envelope in self.store.read_stream(job_stream(job_id)):
            state = evolve(state, decode_payload(envelope))
        return state

    def jobs(self) -> dict[str, JobState]:
        return read_jobs(self.store)

    def _apply(self, state: JobState, command: Command) -> JobState:
        pending = decide(state, command, self.backoff)
        if not pending:
            return state
        envelopes = []
        for stream, event_type, payload in pending:
            event_id = _deterministic_id("ArtifactStored", stream) if event_type == "ArtifactStored" else None
            envelopes.append(new_envelope(event_type, stream, payload, source=SOURCE, event_id=event_id))
        own = job_stream(state.job_id)
        self.store.append(envelopes, expected={own: exact(state.version)})
        for stream, _, payload in pending:
            if stream == own:
                state = evolve(state, payload)
        return state

    def queue(self, spec: CompileSpec) -> JobState:
        state = self.state(spec.job_id)
        return self._apply(state, Queue(spec, self.max_attempts))

    def compile(self, spec: CompileSpec) -> JobState:
        """Queue (if new) and run the job to a finished state. A job that already succeeded is returned
        as it is, after rewriting its artifact file if that went missing or was found corrupt. Another
        process asking for the same job at once (a run's compile-ahead child and its training process)
        waits for the job's lock and takes its outcome from the log; two that queue it at once race on the
        append, and the one that loses goes on from the job's state in the log."""
        for attempt in range(CONCURRENT_ATTEMPTS):
            try:
                state = self.run(self.queue(spec))
                break
            except WrongExpectedVersion:
                if attempt == CONCURRENT_ATTEMPTS - 1:
                    raise
        if state.status is Status.SUCCEEDED and not self.library.exists(state.artifact_hash):
            self.restore(state)
        return state

    def run(self, state: JobState) -> JobState:
        if state.status.finished:  # nothing to run; JOBS counts the jobs this process ran to an outcome
            return state
        with job_lock(self.library.root, state.job_id):
            state = self.state(state.job_id)  # another process may have run it while we waited
            if state.status.finished:
                return state
            return self._run_locked(state)

    def _run_locked(self, state: JobState) -> JobState:
        """Run the job to an outcome, its lock held: an attempt the log shows running was a dead process's."""
        if state.status is Status.RUNNING:
            metrics.RESUMED.inc()
        while not state.status.finished:
            if state.status is Status.RETRY_WAIT and state.retry_after_ms:
                self.sleep(state.retry_after_ms / 1000.0)
            state = self._apply(state, Start())
            if state.status is not Status.RUNNING:
                break
            state = self._attempt(state)
        metrics.JOBS.labels(state.status.value).inc()
        return state

    def _attempt(self, state: JobState) -> JobState:
        assert state.spec is not None
        started = time.perf_counter()
        try:
            if self.failure_hook is not None:
                self.failure_hook(state.job_id, state.attempts)
            data = self.compile_fn(state.spec)
            artifact_hash = self.library.put(data)
        except Exception as exc:  # any compile error is recorded on the job, then retried or final
            failed = self._apply(state, Fail(f"{type(exc).__name__}: {exc}"))
            if failed.status is Status.RETRY_WAIT:
                metrics.RETRIES.inc()
                metrics.LAST_RETRY.set_to_current_time()
            return failed
        duration = time.perf_counter() - started
        metrics.COMPILE_DURATION.labels(state.spec.strategy).observe(duration)
        metrics.LAST_SUCCESS.set_to_current_time()
        return self._apply(state, Succeed(artifact_hash, len(data), duration * 1000.0))

    def restore(self, state: JobState) -> None:
        """Rewrite a succeeded job's missing or corrupt artifact file: compiles are deterministic, so the
        spec gives back the same bytes. Refuses (leaving no file) when they differ, e.g. another torch."""
        assert state.spec is not None and state.status is Status.SUCCEEDED
        data = self.compile_fn(state.spec)
        if sha256_hex(data) != state.artifact_hash:
            raise RestoreMismatch(
                f"recompiling job {state.job_id} gave different bytes than artifact "
                f"{state.artifact_hash[:16]}… (another torch version?); queue a new compile instead"
            )
        self.library.put(data)

    def resume(self) -> list[JobState]:
        """Run every job the log shows unfinished (queued, interrupted, or waiting for a retry)."""
        unfinished = [state for state in self.jobs().values() if not state.status.finished]
        return [self.run(state) for state in unfinished]

    def compile_many(
        self, specs: Iterable[CompileSpec], on_done: Callable[[JobState], None] | None = None
    ) -> list[JobState]:
        results = []
        for spec in specs:
            result = self.compile(spec)
            results.append(result)
            if on_done is not None:
                on_done(result)
        return results
