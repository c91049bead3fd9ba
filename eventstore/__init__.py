"""The append-only event log: WAL segments, recovery, reads, subscriptions, snapshots, backends.

`open_store(location, **options)` is the one way in: a directory path opens (or creates) the file store
(eventstore.file), a `postgresql://` URL the PostgreSQL backend (eventstore.postgres).
Appends that must not block the caller (the training loop) go through eventstore.appender.AsyncAppender.
"""

from __future__ import annotations

import os

from eventstore.api import (
    ALL_EVENTS,
    ANY,
    EXISTS,
    NO_STREAM,
    CommittedTailMissing,
    CorruptLogError,
    DiskFull,
    EventFilter,
    EventStore,
    EventStoreError,
    Expected,
    InvalidEvent,
    Snapshot,
    StoreUnavailable,
    Subscription,
    WrongExpectedVersion,
    exact,
)

POSTGRES_SCHEMES = ("postgresql:", "postgresql+psycopg:", "postgres:")


def is_database_url(location: str | os.PathLike[str]) -> bool:
    return isinstance(location, str) and location.startswith(POSTGRES_SCHEMES)


def open_store(location: str | os.PathLike[str], **options: object) -> EventStore:
    """Open the store at a directory path (file store) or a PostgreSQL URL.

    File store options: create (default True), fsync ("always", "batch", "interval:<ms>"), segment_size,
    preallocate. PostgreSQL options: create (default True: create the tables if absent), schema.
    Both: read_only (default False): open an existing store for reading; nothing is created, repaired or
    rewritten (a torn tail of the file store is left in place and reported in `store.recovery`), and
    appends are refused. Commands that only read (replay, verify, audit) open the log this way.
    """
    if is_database_url(location):
        from eventstore.postgres import PostgresStore

        return PostgresStore(str(location), **options)  # type: ignore[arg-type]
    from eventstore.file import FileStore

    return FileStore(location, **options)  # type: ignore[arg-type]


__all__ = [
    "ALL_EVENTS",
    "ANY",
    "EXISTS",
    "NO_STREAM",
    "CommittedTailMissing",
    "CorruptLogError",
    "DiskFull",
    "EventFilter",
    "EventStore",
    "EventStoreError",
    "Expected",
    "InvalidEvent",
    "Snapshot",
    "StoreUnavailable",
    "Subscription",
    "WrongExpectedVersion",
    "exact",
    "is_database_url",
    "open_store",
]
