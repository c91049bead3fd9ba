"""Blue/green rebuilds keep every table's columns in the order its migrations gave it (issue 20: run_epochs
came back from a swap with `packet` moved, since migration 0002 appends it while the model lists it
earlier). Compared, table by table, with a freshly migrated database, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect

from ops.bench._workload import realistic_log
from projections import PROJECTION_NAMES, catch_up, open_db, rebuild
from tests.projections.helpers import postgres_database, to_store


def column_orders(engine: Engine) -> dict[str, list[str]]:
    inspector = inspect(engine)
    return {table: [c["name"] for c in inspector.get_columns(table)] for table in inspector.get_table_names()}


@contextmanager
def sqlite_urls(directory: Path) -> Iterator[tuple[str, str]]:
    yield f"sqlite:///{directory / 'fresh.sqlite'}", f"sqlite:///{directory / 'rebuilt.sqlite'}"


@contextmanager
def postgres_urls() -> Iterator[tuple[str, str]]:
    with postgres_database() as fresh, postgres_database() as rebuilt:
        yield fresh, rebuilt


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_blue_green_tables_keep_the_migrations_column_order(tmp_path: Path, backend: str) -> None:
    store = to_store(tmp_path / "log", list(realistic_log(800, seed=9)))
    with sqlite_urls(tmp_path) if backend == "sqlite" else postgres_urls() as (fresh_url, rebuilt_url):
        fresh, rebuilt = open_db(fresh_url), open_db(rebuilt_url)
        catch_up(store, rebuilt)
        rebuild(store, rebuilt, PROJECTION_NAMES, blue_green=True)
        expected, found = column_orders(fresh), column_orders(rebuilt)
        assert sorted(found) == sorted(expected)
        assert {t: c for t, c in found.items() if c != expected[t]} == {}
        fresh.dispose()
        rebuilt.dispose()
    store.close()
