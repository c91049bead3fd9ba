"""Non-blocking appends for any store: the training thread queues events and never waits on a disk or a
database.

`AsyncAppender(store).submit(events, expected)` returns a `concurrent.futures.Future[list[int]]`. On the
file store this is the store's own `submit` (the group-commit writer's background flusher serves it, so
concurrent submissions share fsyncs); on other backends one worker thread appends the queued requests in
submission order. `flush()` waits for everything submitted so far; `close()` flushes and stops the worker
(it does not close the store).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future

from eventstore.api import EventStore, Expected
from eventstore.file import FileStore
from leyline import pb

_Item = tuple[list[pb.EventEnvelope], dict[str, Expected], Future[list[int]]] | None


class AsyncAppender:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._queue: queue.Queue[_Item] = queue.Queue()
        self._pending: list[Future[list[int]]] = []
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        if not isinstance(store, FileStore):
            self._worker = threading.Thread(target=self._run, name="eventstore-appender", daemon=True)
            self._worker.start()

    def submit(
        self, events: Sequence[pb.EventEnvelope], expected: Mapping[str, Expected] | None = None
    ) -> Future[list[int]]:
        if isinstance(self.store, FileStore):
            future = self.store.submit(events, expected)
        else:
            future = Future()
            self._queue.put((list(events), dict(expected or {}), future))
        with self._lock:
            self._pending = [f for f in self._pending if not f.done()]
            self._pending.append(future)
        return future

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything submitted so far is appended (errors stay on their futures)."""
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            future.exception(timeout)

    def close(self) -> None:
        self.flush()
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join()
            self._worker = None

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            events, expected, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(self.store.append(events, expected))
            except BaseException as exc:
                future.set_exception(exc)
