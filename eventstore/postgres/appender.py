"""The client side of a PostgreSQL append: one CALL of the append procedure (eventstore.postgres.append_sql)
on a connection of its own, autocommitted: no pool checkout, reset or isolation-level change around each
(each would be one more round trip). The arrays cross in binary (eventstore.postgres.arrays)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from eventstore import metrics
from eventstore.api import EventStoreError, Expected, InvalidEvent, StoreUnavailable
from eventstore.postgres.append_sql import APPEND_FUNCTION
from eventstore.postgres.arrays import BigintArray, ByteaArray, TextArray, register
from leyline import category_of, pb

BACKEND = "postgres"
# the procedure's statements planned once per connection: left to choose, the server plans them again on
# every call (custom plans for the array parameters), most of its CPU for a small batch
GENERIC_PLANS = "-c plan_cache_mode=force_generic_plan"
Outcome = tuple[list[int], int, tuple[str, int] | None]  # positions, events inserted, (stream, actual)


class Appender:
    def __init__(self, url: str, schema: str, connect_timeout: int, display: str) -> None:
        """url: as psycopg's connect() takes it; display: the URL without its password, for errors."""
        self._url = url
        self._connect_timeout = connect_timeout
        self._display = display
        self.connection: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        self._sql = (
            f'CALL "{schema}".{APPEND_FUNCTION}('
            "%b, %b, %b, %b, %b, %b, %b, %b, %b::bigint[], NULL, NULL, NULL, NULL)"
        )

    def append(
        self, events: Sequence[pb.EventEnvelope], expected: Mapping[str, Expected] | None = None
    ) -> list[int]:
        started = time.perf_counter()
        events = list(events)
        for event in events:
            if not event.event_id or not event.stream or not event.event_type:
                raise InvalidEvent("every event needs an event_id, an event_type and a stream")
        if not events:
            return []
        expected = dict(expected or {})
        data = ByteaArray([event.SerializeToString() for event in events])
        streams = TextArray([event.stream for event in events])
        ids = TextArray([event.event_id for event in events])
        parameters = (
            ids,
            streams,
            TextArray([category_of(stream) for stream in streams]),
            TextArray([event.event_type for event in events]),
            data,
            TextArray(expected),
            TextArray([expectation.kind for expectation in expected.values()]),
            BigintArray([expectation.version for expectation in expected.values()]),
            _ordinals(ids, streams),
        )
        positions, inserted, conflict = self._call(parameters)
        if conflict is not None:
            stream, actual = conflict
            metrics.CONFLICTS.labels(BACKEND).inc()
            expected[stream].check(stream, actual)
            raise EventStoreError(
                f"the server refused an append to {stream!r} at version {actual}, which its "
                "expectation allows"
            )
        if inserted < len(events):
            metrics.DUPLICATES.labels(BACKEND).inc(len(events) - inserted)
        if inserted:
            metrics.BYTES_WRITTEN.labels(BACKEND).inc(sum(map(len, data)))
            metrics.FSYNC_BATCH_SIZE.observe(inserted)
        metrics.APPEND_LATENCY.labels(BACKEND).observe(time.perf_counter() - started)
        return positions

    def _call(self, parameters: tuple[list[Any] | None, ...]) -> Outcome:
        """A connection the server dropped is retried once on a new one: appends are idempotent by
        event_id. A server that does not answer is StoreUnavailable; a batch it cannot store (a value over
        an index's size limit, say) is InvalidEvent, and is not retried."""
        with self._lock:
            try:
                return self._call_once(parameters)
            except _REFUSED as exc:
                raise InvalidEvent(f"{self._display} refused the batch: {_first_line(exc)}") from None
            except psycopg.OperationalError:
                self.close()
            try:
                return self._call_once(parameters)
            except _REFUSED as exc:
                raise InvalidEvent(f"{self._display} refused the batch: {_first_line(exc)}") from None
            except psycopg.OperationalError as exc:
                self.close()
                raise StoreUnavailable(f"{self._display} does not answer: {_first_line(exc)}") from None

    def _call_once(self, parameters: tuple[list[Any] | None, ...]) -> Outcome:
        if self.connection is None:
            self.connection = psycopg.connect(
                self._url,
                autocommit=True,
                connect_timeout=self._connect_timeout,
                options=GENERIC_PLANS,
            )
            register(self.connection.adapters)
        # prepared from the first call
        try:
            row = self.connection.execute(self._sql, parameters, prepare=True, binary=True).fetchone()
        except psycopg.errors.UniqueViolation:
            if parameters[-1] is None:
                raise
            # an event_id already stored: numbered again by the procedure's path for retried events
            row = self.connection.execute(
                self._sql, (*parameters[:-1], None), prepare=True, binary=True
            ).fetchone()
        assert row is not None
        positions, inserted, conflict_stream, conflict_actual = row
        if conflict_stream is not None:
            return [], 0, (conflict_stream, int(conflict_actual))
        return [int(position) for position in positions], int(inserted), None

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def close_guarded(self) -> None:
        """close(), waiting for an append in flight on another thread."""
        with self._lock:
            self.close()


_REFUSED = (psycopg.errors.ProgramLimitExceeded, psycopg.DataError)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _ordinals(ids: list[str], streams: list[str]) -> BigintArray | None:
    """Each event's rank among the batch's events of its stream (1, 2, ...), when no event_id repeats
    within the batch (the server then numbers events without ranking them itself); else None."""
    if len(set(ids)) < len(ids):
        return None
    seen: dict[str, int] = {}
    ordinals = BigintArray()
    for stream in streams:
        seen[stream] = seen.get(stream, 0) + 1
        ordinals.append(seen[stream])
    return ordinals
