"""Appending run events off the training thread.

The training loop hands envelopes (and checkpoint writes, which must reach the disk before their
CheckpointCommitted event is appended) to one writer thread, in order; the thread drains whatever is
queued and appends it in as few store calls as it can, so the loop never waits on fsync. A task's
envelopes join the batch after the task returned (its file is durable by then), so a backlog of several
epochs' checkpoints, which builds up when the disk is slow, costs one log sync instead of one each.
`flush()` waits until everything handed over is in the log (used before a rollback, which needs log
positions, and at the end of a run). An append error is kept and raised by the next call from the
training thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from leyline import pb


class Appender(Protocol):
    def append(self, events: Sequence[pb.EventEnvelope]) -> list[int]: ...


# A task runs on the writer thread and returns the envelopes to append after it; it receives the last
# position known to be in the log (earlier envelopes of the same batch may not be in it yet).
Task = Callable[[int], list[pb.EventEnvelope]]

_STOP = object()


class EventSink:
    def __init__(self, store: Appender, committed_position: int = 0) -> None:
        self._store = store
        self._queue: queue.Queue[object] = queue.Queue()
        self._error: BaseException | None = None
        self.committed_position = committed_position
        self.events_written = 0
        self._thread = threading.Thread(target=self._run, name="tolaria-event-sink", daemon=True)
        self._thread.start()

    def emit(self, envelopes: Sequence[pb.EventEnvelope]) -> None:
        self._raise_error()
        if envelopes:
            self._queue.put(list(envelopes))

    def submit(self, task: Task) -> None:
        self._raise_error()
        self._queue.put(task)

    def flush(self) -> int:
        """Wait until everything handed over is appended; the last committed position."""
        done = threading.Event()
        self._queue.put(done)
        done.wait()
        self._raise_error()
        return self.committed_position

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _append(self, pending: list[pb.EventEnvelope]) -> None:
        if pending and self._error is None:
            positions = self._store.append(pending)
            self.committed_position = max(self.committed_position, *positions)
            self.events_written += len(pending)
        pending.clear()

    def _run(self) -> None:
        stop = False
        while not stop:
            items = [self._queue.get()]
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            pending: list[pb.EventEnvelope] = []
            for item in items:
                try:
                    if item is _STOP:
                        stop = True
                    elif isinstance(item, threading.Event):
                        self._append(pending)
                        item.set()
                    elif isinstance(item, list):
                        pending.extend(item)
                    elif self._error is None and callable(item):
                        try:
                            envelopes = item(self.committed_position)
                        except BaseException:
                            self._append(pending)  # what was handed over before the failed task
                            raise
                        pending.extend(envelopes)
                except BaseException as exc:  # kept for the training thread, which raises it
                    self._error = exc
                    pending.clear()
                    if isinstance(item, threading.Event):
                        item.set()
            try:
                self._append(pending)
            except BaseException as exc:
                self._error = exc


class DiscardingSink:
    """The sink of a rank other than 0 in a data-parallel run: rank 0 alone writes the run's events and
    checkpoint files, so everything handed over here is dropped (a checkpoint is still snapshotted into
    the rank's own cache by the trainer, for its fast rollbacks)."""

    committed_position = 0
    events_written = 0

    def emit(self, envelopes: Sequence[pb.EventEnvelope]) -> None:
        return None

    def submit(self, task: Task) -> None:
        return None

    def flush(self) -> int:
        return self.committed_position

    def close(self) -> None:
        return None
