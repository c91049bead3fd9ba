"""The client side of a PostgreSQL append: one CALL of the append procedure (eventstore.postgres.append_sql)
on a connection of its own, autocommitted: no pool checkout, reset or isolation-level change around each
(each would be one more round trip). The connection announces itself to the other appenders once, when it
opens (a shared advisory lock held for its life): the procedure lets the next append take the lock before
its own commit is flushed only where another appender is connected. The statement is prepared once per
connection and executed through libpq directly (psycopg's cursor around each call cost ~70 µs of client
CPU); the arrays cross in binary (eventstore.postgres.arrays), the four results as text."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg import pq

from eventstore import metrics
from eventstore.api import EventStoreError, Expected, InvalidEvent, StoreUnavailable
from eventstore.postgres.append_sql import ANNOUNCE_APPENDER, APPEND_FUNCTION
from eventstore.postgres.arrays import (
    BIGINT_ARRAY,
    BYTEA_ARRAY,
    TEXT_ARRAY,
    bigint_array,
    bytea_array,
    text_array,
)
from leyline import category_of, pb

BACKEND = "postgres"
# the procedure's statements planned once per connection: left to choose, the server plans them again on
# every call (custom plans for the array parameters), most of its CPU for a small batch
GENERIC_PLANS = "-c plan_cache_mode=force_generic_plan"
Outcome = tuple[list[int], int, tuple[str, int] | None]  # positions, events inserted, (stream, actual)
Parameters = list[bytes]
_STATEMENT = b"esper_append"
_TYPES = [TEXT_ARRAY] * 4 + [BYTEA_ARRAY] + [TEXT_ARRAY] * 2 + [BIGINT_ARRAY] * 2
_BINARY = [1] * len(_TYPES)
_NO_RANKS = bigint_array([])


class Appender:
    def __init__(self, url: str, schema: str, connect_timeout: int, display: str) -> None:
        """url: as psycopg's connect() takes it; display: the URL without its password, for errors."""
        self._url = url
        self._connect_timeout = connect_timeout
        self._display = display
        self.connection: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        self._sql = (
            f'CALL "{schema}".{APPEND_FUNCTION}($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL, NULL, NULL)'
        ).encode()
        self._announce = f'SELECT "{schema}".{ANNOUNCE_APPENDER}()'.encode()

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
        data = [event.SerializeToString() for event in events]
        streams = [event.stream for event in events]
        ids = [event.event_id for event in events]
        ordinals = _ordinals(ids, streams)
        parameters: Parameters = [
            text_array(ids),
            text_array(streams),
            text_array([category_of(stream) for stream in streams]),
            text_array([event.event_type for event in events]),
            bytea_array(data),
            text_array(expected),
            text_array([expectation.kind for expectation in expected.values()]),
            bigint_array([expectation.version for expectation in expected.values()]),
            bigint_array(ordinals),  # empty: the server ranks the events itself
        ]
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

    def _call(self, parameters: Parameters) -> Outcome:
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

    def _call_once(self, parameters: Parameters) -> Outcome:
        if self.connection is None:
            self.connection = psycopg.connect(
                self._url,
                autocommit=True,
                connect_timeout=self._connect_timeout,
                options=GENERIC_PLANS,
            )
            self._check(self.connection.pgconn.prepare(_STATEMENT, self._sql, _TYPES))
            # while this connection lives, other appenders' commits do not hold the lock through their flush
            self._check(self.connection.pgconn.exec_(self._announce))
        try:
            row = self._execute(parameters)
        except psycopg.errors.UniqueViolation:
            if parameters[-1] == _NO_RANKS:
                raise
            # an event_id already stored: numbered again by the procedure's path for retried events
            row = self._execute([*parameters[:-1], _NO_RANKS])
        positions, inserted, conflict_stream, conflict_actual = row
        if conflict_stream is not None:
            return [], 0, (conflict_stream.decode(), int(conflict_actual or 0))
        numbers = positions[1:-1].split(b",") if positions and positions != b"{}" else []
        return [int(position) for position in numbers], int(inserted or 0), None

    def _execute(self, parameters: Parameters) -> list[bytes | None]:
        assert self.connection is not None
        result = self.connection.pgconn.exec_prepared(_STATEMENT, parameters, _BINARY)
        self._check(result)
        return [result.get_value(0, column) for column in range(4)]

    def _check(self, result: pq.abc.PGresult) -> None:
        """A failed statement as psycopg raises it: OperationalError when the connection is lost."""
        if result.status in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
            return
        assert self.connection is not None
        if self.connection.pgconn.status != pq.ConnStatus.OK:
            message = self.connection.pgconn.get_error_message() or "the connection was lost"
            raise psycopg.OperationalError(message)
        raise psycopg.errors.error_from_result(result)

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


def _ordinals(ids: list[str], streams: list[str]) -> list[int]:
    """Each event's rank among the batch's events of its stream (1, 2, ...), when no event_id repeats
    within the batch (the server then numbers events without ranking them itself); else none."""
    if len(set(ids)) < len(ids):
        return []
    seen: dict[str, int] = {}
    ordinals = []
    for stream in streams:
        seen[stream] = seen.get(stream, 0) + 1
        ordinals.append(seen[stream])
    return ordinals
