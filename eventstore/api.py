"""The event store's public contract, shared by every backend (SPEC §4–5).

Positions and versions:
- global positions start at 1, are gap-free and in commit order; `head_position()` is the last one
  (0 for an empty store); `read_all(from_position=p)` and `subscribe(from_position=p)` include p;
- a stream's first event has stream_version 1; `stream_version()` of an absent stream is 0.

Events are `leyline.pb.EventEnvelope`s: `append` takes unsaved envelopes and the store fills in
`stream_version` and `global_position` on what it returns from reads.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from leyline import pb


class EventStoreError(Exception):
    """Base of the store's errors."""


class WrongExpectedVersion(EventStoreError):
    def __init__(self, stream: str, expected: Expected, actual: int) -> None:
        super().__init__(f"stream {stream!r}: expected {expected}, actual version is {actual}")
        self.stream = stream
        self.expected = expected
        self.actual = actual


class CorruptLogError(EventStoreError):
    """A damaged record before the tail: never skipped, always named."""

    def __init__(self, segment: str, offset: int, position: int, reason: str) -> None:
        super().__init__(
            f"corrupt record in segment {segment} at byte offset {offset} "
            f"(global position {position}): {reason}"
        )
        self.segment = segment
        self.offset = offset
        self.position = position
        self.reason = reason


class CommittedTailMissing(CorruptLogError):
    """The segments end below a head the store recorded as committed (INDEX, HEAD): records that were
    acknowledged are gone or were replaced, which no torn write explains; nothing is truncated."""

    def __init__(
        self, segment: str, offset: int, found: int, expected: int, source: str, detail: str
    ) -> None:
        super().__init__(
            segment,
            offset,
            found + 1,
            f"{detail}, but {source} records committed head {expected} and the segments hold only "
            f"up to head {found}: restore the log from a copy",
        )
        self.expected_head = expected
        self.found_head = found
        self.source = source


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)  # what an OSError of a full disk carries


class DiskFull(EventStoreError):
    """No space left on the device while appending: nothing of the failed append was committed."""

    def __init__(self, path: str) -> None:
        super().__init__(f"disk full while writing {path}; free space, then `esper run --resume`")
        self.path = path


class StoreUnavailable(EventStoreError):
    """The location is not a store, or the database does not answer."""


class InvalidEvent(EventStoreError):
    """An envelope the store cannot accept (no event_id, event_type or stream)."""


@dataclass(frozen=True)
class Expected:
    kind: Literal["any", "no_stream", "exists", "exact"]
    version: int = 0

    def __str__(self) -> str:
        return f"version {self.version}" if self.kind == "exact" else self.kind.replace("_", " ")

    def check(self, stream: str, actual: int) -> None:
        ok = (
            self.kind == "any"
            or (self.kind == "no_stream" and actual == 0)
            or (self.kind == "exists" and actual > 0)
            or (self.kind == "exact" and actual == self.version)
        )
        if not ok:
            raise WrongExpectedVersion(stream, self, actual)


ANY = Expected("any")
NO_STREAM = Expected("no_stream")
EXISTS = Expected("exists")


def exact(version: int) -> Expected:
    return Expected("exact", version)


@dataclass(frozen=True)
class EventFilter:
    """Which events a read or subscription wants: each non-empty set must hold the event's stream, its
    category (`leyline.category_of`) or its type; empty means all. Each backend applies it where it is
    cheapest (the file store before decoding, PostgreSQL in SQL)."""

    streams: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    event_types: frozenset[str] = frozenset()


ALL_EVENTS = EventFilter()


@dataclass(frozen=True)
class Snapshot:
    stream: str
    version: int  # stream version the state reflects
    schema_version: int
    data: bytes


class Subscription(Protocol):
    """Catch-up, then live. Iterating yields events until `timeout` passes with nothing new."""

    def poll(self, timeout: float | None = None, max_events: int = 1000) -> list[pb.EventEnvelope]: ...

    def __iter__(self) -> Iterator[pb.EventEnvelope]: ...

    def close(self) -> None: ...


class EventStore(Protocol):
    def append(
        self,
        events: Sequence[pb.EventEnvelope],
        expected: Mapping[str, Expected] | None = None,
    ) -> list[int]:
        """Atomically append events (possibly to several streams); return their global positions.

        An event whose event_id is already stored is not written again: its original position is
        returned. Raises WrongExpectedVersion before writing anything if a stream's check fails.
        """
        ...

    def read_stream(
        self, stream: str, from_version: int = 1, limit: int | None = None
    ) -> list[pb.EventEnvelope]: ...

    def read_all(
        self,
        from_position: int = 1,
        event_filter: EventFilter = ALL_EVENTS,
        limit: int | None = None,
        to_position: int | None = None,
    ) -> Iterable[pb.EventEnvelope]: ...

    def subscribe(
        self,
        from_position: int = 1,
        event_filter: EventFilter = ALL_EVENTS,
        timeout: float | None = 1.0,
    ) -> Subscription: ...

    def head_position(self) -> int: ...

    def stream_version(self, stream: str) -> int: ...

    def save_snapshot(self, snapshot: Snapshot) -> None: ...

    def load_snapshot(self, stream: str, schema_version: int) -> Snapshot | None:
        """The stored snapshot, or None if there is none, it fails to load or its schema is outdated."""
        ...

    def close(self) -> None: ...
