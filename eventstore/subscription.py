"""Catch-up, then live: the subscription loop both backends share; each says how to fetch and wait."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator

from eventstore.api import EventFilter
from leyline import pb


class PollingSubscription(ABC):
    def __init__(self, from_position: int, event_filter: EventFilter, timeout: float | None) -> None:
        self._next = max(from_position, 1)
        self._filter = event_filter
        self._timeout = timeout
        self._closed = False

    @property
    def position(self) -> int:
        """The next position this subscription will look at."""
        return self._next

    @abstractmethod
    def _fetch(self, max_events: int) -> list[pb.EventEnvelope] | None:
        """Matching events from the next position on (advancing it past what was scanned), or None when
        the log's head is still before the next position."""

    @abstractmethod
    def _wait(self, remaining: float | None) -> None:
        """Wait for new appends, at most `remaining` seconds (None: the backend's own polling period)."""

    def poll(self, timeout: float | None = None, max_events: int = 1000) -> list[pb.EventEnvelope]:
        """Up to max_events new events, waiting at most timeout (default: the subscription's) for one."""
        wait = self._timeout if timeout is None else timeout
        deadline = None if wait is None else time.monotonic() + wait
        while not self._closed:
            found = self._fetch(max_events)
            if found:
                return found
            if found is not None:
                continue  # events were scanned but none matched the filter: look further at once
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return []
            self._wait(remaining)
        return []

    def __iter__(self) -> Iterator[pb.EventEnvelope]:
        while not self._closed:
            batch = self.poll()
            if not batch:
                return
            yield from batch

    def close(self) -> None:
        self._closed = True
