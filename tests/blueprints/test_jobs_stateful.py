"""A hypothesis state machine over Tezzeret on a real file store: compiles that fail or crash at random,
restarts that resume, against a model of what must hold. The compile function is a fast deterministic
stand-in (bytes derived from the spec) so the machine explores many histories; test_crash.py does the
same with real torch.export and a SIGKILLed process."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from domains.karn.blocks import CONV
from domains.tezzeret.jobs import Backoff, CompileSpec, Start, Status
from domains.tezzeret.service import Tezzeret, resolve_spec
from domains.urza.library import ArtifactLibrary, sha256_hex
from eventstore import EventStore, open_store
from leyline import decode_payload, pb
from leyline.datadir import DataDir

SPECS = [resolve_spec("BP002", {"hidden": float(hidden)}, CONV, (4, 4, 4)) for hidden in (2, 3, 4)]
MAX_ATTEMPTS = 3


def fake_artifact(spec: CompileSpec) -> bytes:
    return f"artifact of {spec.job_id}".encode()


class Flaky:
    """Fails the attempts it is told to fail."""

    def __init__(self) -> None:
        self.fail_next = False

    def __call__(self, job_id: str, attempt: int) -> None:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("flaky compiler")


class CompileJobs(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="esper-jobs-"))
        self.flaky = Flaky()
        self.store: EventStore = open_store(DataDir(self.directory).log)
        self.tezzeret = self._service()

    def _service(self) -> Tezzeret:
        library = ArtifactLibrary(DataDir(self.directory).artifacts, self.store)
        return Tezzeret(
            self.store,
            library,
            max_attempts=MAX_ATTEMPTS,
            backoff=Backoff(base_ms=1),
            sleep=lambda seconds: None,
            failure_hook=self.flaky,
            compile_fn=fake_artifact,
        )

    @rule(spec=st.sampled_from(SPECS), fail=st.booleans())
    def compile(self, spec: CompileSpec, fail: bool) -> None:
        self.flaky.fail_next = fail
        state = self.tezzeret.compile(spec)
        assert state.status.finished

    @rule(spec=st.sampled_from(SPECS))
    def crash_during_an_attempt(self, spec: CompileSpec) -> None:
        """Queue and start an attempt, then lose the process (reopen the store, a new service)."""
        state = self.tezzeret.queue(spec)
        if state.status.finished:
            return
        self.tezzeret._apply(state, Start())
        self.store.close()
        self.store = open_store(DataDir(self.directory).log)
        self.tezzeret = self._service()

    @rule()
    def restart_and_resume(self) -> None:
        self.store.close()
        self.store = open_store(DataDir(self.directory).log)
        self.tezzeret = self._service()
        for state in self.tezzeret.resume():
            assert state.status.finished

    @invariant()
    def jobs_stay_within_their_attempts_and_artifacts_are_unique(self) -> None:
        jobs = self.tezzeret.jobs()
        stored: dict[str, int] = {}
        for envelope in self.store.read_all():
            if envelope.event_type == "ArtifactStored":
                payload = decode_payload(envelope)
                assert isinstance(payload, pb.ArtifactStored)
                stored[payload.artifact_hash] = stored.get(payload.artifact_hash, 0) + 1
        assert all(count == 1 for count in stored.values())
        library = self.tezzeret.library
        for state in jobs.values():
            assert state.attempts <= MAX_ATTEMPTS
            if state.status is Status.SUCCEEDED:
                assert state.spec is not None
                assert state.artifact_hash == sha256_hex(fake_artifact(state.spec))
                assert library.exists(state.artifact_hash) and state.artifact_hash in stored
            if state.status is Status.FAILED:
                assert state.attempts == MAX_ATTEMPTS
        assert set(library.artifact_hashes()) <= set(stored)

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.directory, ignore_errors=True)


CompileJobs.TestCase.settings = settings(max_examples=25, stateful_step_count=12, deadline=None)
TestCompileJobs = CompileJobs.TestCase
