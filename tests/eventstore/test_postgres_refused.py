"""A batch the PostgreSQL server cannot store fails its own append with InvalidEvent, not retried as an
unanswering server, and leaves the store as it was."""

from __future__ import annotations

import os
import uuid

import pytest

from eventstore.api import InvalidEvent
from eventstore.postgres import PostgresStore
from leyline import new_envelope, pb

pytestmark = pytest.mark.postgres


def _event(stream: str) -> pb.EventEnvelope:
    return new_envelope("RunStarted", stream, pb.RunStarted(run_id=stream))


def test_a_stream_name_over_the_index_limit_is_an_invalid_event_and_the_store_goes_on(
    postgres_server: str,
) -> None:
    store = PostgresStore(postgres_server, schema=f"s_{uuid.uuid4().hex[:12]}")
    try:
        assert store.append([_event("run-a")]) == [1]
        too_long = os.urandom(3000).hex()  # incompressible: over btree's 2,704-byte limit for one index row
        with pytest.raises(InvalidEvent, match="index row size"):
            store.append([_event("run-b"), _event(too_long)])
        assert store.head_position() == 1
        assert store.stream_version("run-b") == 0
        assert store.append([_event("run-c")]) == [2]
    finally:
        store.drop()
        store.close()
