"""A hypothesis state machine: the file store against an in-memory model, across appends, reopens and crashes.

A simulated crash appends a batch and then cuts the segment somewhere inside that batch's bytes (a write
torn by a crash before the append was acknowledged): after reopening, the store must equal the model
without that batch.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from eventstore import ANY, EXISTS, NO_STREAM, Expected, WrongExpectedVersion, exact
from eventstore.file import FileStore
from leyline import pb
from tests.eventstore.conftest import make_event
from tests.eventstore.damage import as_if_crashed

STREAMS = ["run-a", "run-b", "seed-r.1", "seed-r.2"]
expectations = st.sampled_from(["any", "no_stream", "exists", "exact", "exact_wrong"])


class StoreModel(RuleBasedStateMachine):
    @initialize()
    def open(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="esper-stateful-"))
        self.location = self.directory / "log"
        self.store = FileStore(self.location, segment_size=2048)
        self.log: list[pb.EventEnvelope] = []

    def version(self, stream: str) -> int:
        return sum(1 for event in self.log if event.stream == stream)

    def expectation(self, kind: str, stream: str) -> Expected:
        actual = self.version(stream)
        return {
            "any": ANY,
            "no_stream": NO_STREAM,
            "exists": EXISTS,
            "exact": exact(actual),
            "exact_wrong": exact(actual + 1),
        }[kind]

    @rule(streams=st.lists(st.sampled_from(STREAMS), min_size=1, max_size=5), kind=expectations)
    def append(self, streams: list[str], kind: str) -> None:
        events = [make_event(stream) for stream in streams]
        expected = {streams[0]: self.expectation(kind, streams[0])}
        actual = self.version(streams[0])
        should_fail = not (
            kind in ("any", "exact")
            or (kind == "no_stream" and actual == 0)
            or (kind == "exists" and actual > 0)
        )
        try:
            positions = self.store.append(events, expected)
        except WrongExpectedVersion as exc:
            assert should_fail
            assert exc.actual == actual
            return
        assert not should_fail
        assert positions == list(range(len(self.log) + 1, len(self.log) + len(events) + 1))
        self.log.extend(events)

    @precondition(lambda self: bool(self.log))
    @rule(data=st.data())
    def append_duplicates(self, data: st.DataObject) -> None:
        indexes = data.draw(st.lists(st.integers(0, len(self.log) - 1), min_size=1, max_size=4))
        assert self.store.append([self.log[i] for i in indexes]) == [i + 1 for i in indexes]

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = FileStore(self.location, segment_size=2048)
        assert self.store.recovery.truncated_bytes == 0

    @rule(streams=st.lists(st.sampled_from(STREAMS), min_size=1, max_size=4), cut=st.floats(0.0, 0.999))
    def crash_mid_append(self, streams: list[str], cut: float) -> None:
        segment = self.store._log.segments[-1] if self.store._log.segments else None
        before = (segment.name, segment.end) if segment is not None else None
        self.store.append([make_event(stream) for stream in streams])
        self.store.close()
        as_if_crashed(self.location, len(self.log))  # the append never returned
        names = sorted(p.name for p in self.location.glob("*.wal"))
        path = self.location / names[-1]
        start = before[1] if before is not None and before[0] == names[-1] else 0
        size = path.stat().st_size
        os.truncate(path, start + int((size - start) * cut))
        self.store = FileStore(self.location, segment_size=2048)

    @invariant()
    def matches_the_model(self) -> None:
        assert self.store.head_position() == len(self.log)
        stored = list(self.store.read_all())
        assert [e.event_id for e in stored] == [e.event_id for e in self.log]
        for stream in STREAMS:
            assert self.store.stream_version(stream) == self.version(stream)

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.directory, ignore_errors=True)


StoreModel.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStoreModel = StoreModel.TestCase
