"""Compile jobs: the pure aggregate (decide/evolve) and the service on a real file store."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domains.karn.blocks import CONV, SEQUENCE
from domains.tezzeret import jobs
from domains.tezzeret.jobs import (
    Backoff,
    CompileSpec,
    Fail,
    JobError,
    JobState,
    Queue,
    Start,
    Status,
    Succeed,
)
from domains.tezzeret.service import FailFirst, Tezzeret, resolve_spec
from domains.urza.library import ArtifactLibrary
from eventstore import EventStore
from leyline import decode_payload, pb
from tests.blueprints.conftest import events_of

SPEC = CompileSpec.of("BP002", {"hidden": 4.0}, CONV, (4, 4, 4))


def apply(
    state: JobState, command: jobs.Command, backoff: Backoff = jobs.DEFAULT_BACKOFF
) -> tuple[JobState, list[str]]:
    names = []
    for stream, event_type, payload in jobs.decide(state, command, backoff):
        names.append(event_type)
        if stream == SPEC.stream:
            state = jobs.evolve(state, payload)
    return state, names


def test_job_id_is_derived_from_the_spec() -> None:
    same = CompileSpec.of("BP002", {"hidden": 4}, CONV, [4, 4, 4])
    assert same.job_id == SPEC.job_id
    assert CompileSpec.of("BP002", {"hidden": 5}, CONV, (4, 4, 4)).job_id != SPEC.job_id
    assert CompileSpec.of("BP002", {"hidden": 4}, SEQUENCE, (4, 4)).job_id != SPEC.job_id


def test_retry_then_success_in_the_aggregate() -> None:
    state, names = apply(JobState(SPEC.job_id), Queue(SPEC, 3))
    assert names == ["CompileJobQueued"] and state.status is Status.QUEUED
    assert apply(state, Queue(SPEC, 3))[1] == []  # queueing again is a no-op
    state, _ = apply(state, Start())
    state, names = apply(state, Fail("boom"), Backoff(base_ms=100))
    assert names == ["CompileJobFailed"]
    assert state.status is Status.RETRY_WAIT and state.retry_after_ms == 100 and state.last_error == "boom"
    state, _ = apply(state, Start())
    assert state.attempts == 2
    state, names = apply(state, Succeed("ab" * 32, 10, 1.5))
    assert names == ["ArtifactStored", "CompileJobSucceeded"]
    assert state.status is Status.SUCCEEDED and state.artifact_hash == "ab" * 32
    with pytest.raises(JobError):
        apply(state, Start())


def test_exhausted_retries_fail_the_job_and_fire_an_alert() -> None:
    state, _ = apply(JobState(SPEC.job_id), Queue(SPEC, 2))
    for attempt in (1, 2):
        state, _ = apply(state, Start())
        state, names = apply(state, Fail(f"error {attempt}"))
    assert names == ["CompileJobFailed", "AlertFired"]
    assert state.status is Status.FAILED and state.attempts == 2


def test_an_interrupted_attempt_is_recorded_before_the_next_one() -> None:
    state, _ = apply(JobState(SPEC.job_id), Queue(SPEC, 2))
    state, _ = apply(state, Start())
    state, names = apply(state, Start())  # the process died during attempt 1
    assert names == ["CompileJobFailed", "CompileJobStarted"]
    assert state.attempts == 2 and state.status is Status.RUNNING
    state, names = apply(state, Start())  # and again during the last attempt
    assert names == ["CompileJobFailed", "AlertFired"]
    assert state.status is Status.FAILED


@settings(max_examples=60, deadline=None)
@given(
    max_attempts=st.integers(1, 5),
    outcomes=st.lists(st.sampled_from(["fail", "crash", "succeed"]), min_size=1, max_size=8),
)
def test_attempts_never_exceed_the_maximum(max_attempts: int, outcomes: list[str]) -> None:
    state, _ = apply(JobState(SPEC.job_id), Queue(SPEC, max_attempts))
    for outcome in outcomes:
        if state.status.finished:
            break
        state, _ = apply(state, Start())
        if state.status is not Status.RUNNING:
            break
        if outcome == "fail":
            state, _ = apply(state, Fail("x"))
        elif outcome == "succeed":
            state, _ = apply(state, Succeed("cd" * 32, 1, 1.0))
        assert state.attempts <= max_attempts
    assert state.attempts <= max_attempts
    if state.status is Status.FAILED:
        assert state.attempts == max_attempts


def test_backoff_is_exponential_and_capped() -> None:
    backoff = Backoff(base_ms=100, cap_ms=1000)
    assert [backoff.delay_ms(n) for n in range(1, 7)] == [100, 200, 400, 800, 1000, 1000]


def test_retry_then_success_through_the_service(
    store: EventStore, library: ArtifactLibrary, sleeps: list[float]
) -> None:
    tezzeret = Tezzeret(
        store,
        library,
        max_attempts=4,
        backoff=Backoff(base_ms=50),
        sleep=sleeps.append,
        failure_hook=FailFirst(2),
    )
    state = tezzeret.compile(resolve_spec("BP002", {"hidden": 4}, CONV, (4, 4, 4)))
    assert state.status is Status.SUCCEEDED and state.attempts == 3
    assert sleeps == [0.05, 0.1]
    failed = [decode_payload(e) for e in store.read_stream(state.spec.stream if state.spec else "")]
    failures = [p for p in failed if isinstance(p, pb.CompileJobFailed)]
    assert [(f.attempt, f.will_retry) for f in failures] == [(1, True), (2, True)]
    assert "injected compile failure" in failures[0].error
    assert library.exists(state.artifact_hash)
    assert events_of(store, "ArtifactStored") == [f"artifact-{state.artifact_hash}"]
    assert events_of(store, "AlertFired") == []


def test_exhausted_retries_through_the_service(
    store: EventStore, library: ArtifactLibrary, sleeps: list[float]
) -> None:
    tezzeret = Tezzeret(store, library, max_attempts=2, sleep=sleeps.append, failure_hook=FailFirst(5))
    state = tezzeret.compile(resolve_spec("BP002", {}, CONV, (4, 4, 4)))
    assert state.status is Status.FAILED and state.attempts == 2
    alerts = [decode_payload(e) for e in store.read_all() if e.event_type == "AlertFired"]
    assert len(alerts) == 1
    alert = alerts[0]
    assert isinstance(alert, pb.Alert)
    assert alert.name == jobs.ALERT_NAME and alert.labels["blueprint_id"] == "BP002"
    assert events_of(store, "ArtifactStored") == []
    assert library.artifact_hashes() == []
    # Asking again returns the failed job as it is: no new attempts behind the operator's back.
    assert tezzeret.compile(resolve_spec("BP002", {}, CONV, (4, 4, 4))).attempts == 2


def test_compiling_the_same_spec_twice_is_one_job_and_one_artifact(
    tezzeret: Tezzeret, store: EventStore, library: ArtifactLibrary
) -> None:
    spec = resolve_spec("BP006", {}, SEQUENCE, (6, 16))
    first = tezzeret.compile(spec)
    second = tezzeret.compile(spec)
    assert first == second
    assert len(events_of(store, "CompileJobQueued")) == 1
    assert len(events_of(store, "CompileJobSucceeded")) == 1
    assert library.artifact_hashes() == [first.artifact_hash]


def test_a_job_another_process_asks_for_meanwhile_waits_for_its_outcome(
    store: EventStore, library: ArtifactLibrary
) -> None:
    """Two live processes compiling one spec (two episodes on one log, a run's compile-ahead child and its
    training thread): the second waits for the first's attempt instead of recording it as interrupted
    and starting its own, which used up the job's attempts and failed it for good."""
    spec = resolve_spec("BP002", {}, CONV, (4, 4, 4))
    other = Tezzeret(store, library)
    outcome: list[JobState] = []
    second = threading.Thread(target=lambda: outcome.append(other.compile(spec)))

    def the_other_process_asks_for_it(job_id: str, attempt: int) -> None:
        second.start()
        second.join(timeout=1.0)  # without the lock it records this attempt as interrupted meanwhile

    state = Tezzeret(store, library, failure_hook=the_other_process_asks_for_it).compile(spec)
    second.join()
    assert state.status is Status.SUCCEEDED and outcome == [other.state(spec.job_id)]
    assert outcome[0].artifact_hash == state.artifact_hash
    assert len(events_of(store, "CompileJobStarted")) == 1
    assert events_of(store, "CompileJobFailed") == []


def test_an_attempt_whose_process_died_is_interrupted_once_its_lock_is_free(
    tezzeret: Tezzeret, store: EventStore, library: ArtifactLibrary
) -> None:
    spec = resolve_spec("BP003", {}, SEQUENCE, (4, 16))
    tezzeret._apply(tezzeret.queue(spec), Start())  # a process started it, then died: no lock is held
    state = tezzeret.compile(spec)
    assert state.status is Status.SUCCEEDED and state.attempts == 2
    failed = decode_payload(store.read_stream(spec.stream)[2])
    assert isinstance(failed, pb.CompileJobFailed) and failed.error.startswith("interrupted")


def test_resume_runs_queued_and_waiting_jobs(tezzeret: Tezzeret, store: EventStore) -> None:
    waiting = tezzeret.queue(resolve_spec("BP012", {}, CONV, (4, 4, 4)))
    waiting = tezzeret._apply(waiting, Start())
    waiting = tezzeret._apply(waiting, Fail("transient"))
    queued = tezzeret.queue(resolve_spec("BP003", {}, SEQUENCE, (4, 16)))
    finished = {state.job_id: state for state in tezzeret.resume()}
    assert finished[waiting.job_id].status is Status.SUCCEEDED
    assert finished[queued.job_id].status is Status.SUCCEEDED
    assert tezzeret.resume() == []
    assert {s.job_id: replace(s, version=0) for s in tezzeret.jobs().values()} == {
        k: replace(v, version=0) for k, v in finished.items()
    }
