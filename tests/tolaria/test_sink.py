"""The event writer thread: a backlog of checkpoint tasks goes to the log in one append, in order, and
what was handed over before a failed task is still appended."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from domains.tolaria.sink import EventSink, Task
from leyline import new_envelope, pb


def envelope(name: str) -> pb.EventEnvelope:
    return new_envelope("RunStarted", "run-rsink", pb.RunStarted(run_id=name), run_id="rsink")


class RecordingStore:
    def __init__(self) -> None:
        self.appends: list[list[str]] = []

    def append(self, events: Sequence[pb.EventEnvelope]) -> list[int]:
        self.appends.append([e.event_id for e in events])
        start = sum(map(len, self.appends[:-1]))
        return list(range(start + 1, start + len(events) + 1))


def test_a_backlog_of_tasks_is_appended_once_in_order() -> None:
    store = RecordingStore()
    sink = EventSink(store)
    entered, gate = threading.Event(), threading.Event()
    seen: list[int] = []

    def blocked(position: int) -> list[pb.EventEnvelope]:
        entered.set()
        gate.wait()
        return [first]

    def task(event: pb.EventEnvelope) -> Task:
        def run(position: int) -> list[pb.EventEnvelope]:
            seen.append(position)
            return [event]

        return run

    first, events = envelope("first"), [envelope(f"e{i}") for i in range(4)]
    sink.submit(blocked)
    entered.wait()  # the writer is busy with it while the backlog builds up
    sink.submit(task(events[0]))
    sink.emit([events[1]])
    sink.submit(task(events[2]))
    sink.emit([events[3]])
    gate.set()
    assert sink.flush() == 5
    sink.close()
    ids = [e.event_id for e in [first, *events]]
    assert [event for append in store.appends for event in append] == ids
    assert store.appends == [ids[:1], ids[1:]]  # the backlog behind the busy task: one append
    assert seen == [1, 1]  # each task saw the last position in the log when it ran


def test_a_failed_task_keeps_what_was_handed_over_before_it() -> None:
    store = RecordingStore()
    sink = EventSink(store)
    entered, gate = threading.Event(), threading.Event()
    before = envelope("before")

    def blocked(position: int) -> list[pb.EventEnvelope]:
        entered.set()
        gate.wait()
        return []

    def failing(position: int) -> list[pb.EventEnvelope]:
        raise OSError("disk full")

    sink.submit(blocked)
    entered.wait()
    sink.emit([before])
    sink.submit(failing)
    sink.emit([envelope("after")])
    gate.set()
    with pytest.raises(OSError, match="disk full"):
        sink.flush()
    assert store.appends == [[before.event_id]]
    with pytest.raises(OSError, match="disk full"):
        sink.close()
