"""A scratch PostgreSQL database per test or session on the shared server, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

SERVER = "postgres@127.0.0.1:5432"


@contextmanager
def scratch_database(prefix: str, driver: str = "postgresql") -> Iterator[str]:
    """Create a uniquely named database and yield its URL (`driver://…`, e.g. `postgresql+psycopg`)."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(f"postgresql://{SERVER}/postgres", autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable on 127.0.0.1:5432: {exc}")
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{driver}://{SERVER}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()
