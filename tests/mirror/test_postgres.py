"""The mirror follows a PostgreSQL event store exactly as it follows the file store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from eventstore import EventStore, open_store
from eventstore.mirror import MirrorThread
from tests.mirror.redis_support import SHARED_REDIS, wait_until
from tests.mirror.test_mirror import assert_redis_equals_log, mixed_events

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

DATABASE = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def postgres_store() -> Iterator[EventStore]:
    schema = f"mirror_{uuid.uuid4().hex[:12]}"
    try:
        store = open_store(DATABASE, schema=schema)
    except Exception as exc:
        pytest.fail(f"PostgreSQL is not usable at {DATABASE}: {exc}")
    try:
        yield store
    finally:
        store.close()
        with psycopg.connect(DATABASE, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_mirror_thread_follows_a_postgresql_store(
    postgres_store: EventStore, shared_redis: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    postgres_store.append(mixed_events(40))
    mirror = MirrorThread(postgres_store, SHARED_REDIS, tmp_path, prefix=prefix, idle_timeout=0.05).start()
    try:
        postgres_store.append(mixed_events(35))
        wait_until(lambda: mirror.position == 75)
        assert mirror.error is None
    finally:
        mirror.stop()
    assert_redis_equals_log(shared_redis, postgres_store, prefix)
