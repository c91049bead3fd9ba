"""The projection database: where it is, how it is opened, and its schema upgrades (alembic).

SQLite (`<data-dir>/projections.sqlite`) by default, PostgreSQL by URL (`--db URL` or `ESPER_DB_URL`).
SQLite runs in WAL mode so readers keep reading a consistent snapshot while a projection commits, and
every write transaction starts with `BEGIN IMMEDIATE`, so that two writers serialise at BEGIN instead of
failing at their first write.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, text

from leyline.datadir import DataDir

if TYPE_CHECKING:
    from alembic.config import Config

ENV_DB_URL = "ESPER_DB_URL"
# The alembic scripts (the top-level migrations package, beside this one): alembic reads them as files.
# A path, not an import: migrations sits above projections (its env.py imports the schema from here).
MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000


class DatabaseError(Exception):
    """The projection database cannot be opened or is not at the schema this code needs."""


def driver_url(url: str) -> str:
    """A plain postgresql:// or postgres:// URL made to name psycopg (3), the driver installed."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def resolve_url(data_dir: Path | str, url: str | None = None) -> str:
    """The database URL: the one given, else $ESPER_DB_URL, else the data directory's SQLite file."""
    chosen = url or os.environ.get(ENV_DB_URL)
    if chosen:
        return driver_url(chosen)
    return f"sqlite:///{DataDir.of(data_dir).projections_db}"


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy's "begin" event below instead of the driver's implicit
        # BEGIN (which it would not issue before DDL, breaking transactional swaps).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA cache_size = -65536")
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get("write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_db_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True)


def write_connection(engine: Engine) -> Connection:
    """A connection whose transactions take the write lock at BEGIN (SQLite; a no-op elsewhere)."""
    return engine.connect().execution_options(write=True)


# alembic is imported where a schema is read or changed: it costs a third of a second, which every command
# that only parses its options (`esper audit --help`) would otherwise pay.
def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise DatabaseError("migrations/ holds no revision")
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Bring the schema to `revision`; returns (revision before, revision after)."""
    before = current_revision(engine)
    with write_connection(engine) as connection:
        from alembic import command

        command.upgrade(alembic_config(connection), revision)
        connection.commit()
    after = current_revision(engine)
    if after is None:
        raise DatabaseError(f"upgrade of {engine.url!r} to {revision} left no revision")
    return before, after


@contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    """Held while one process upgrades the schema, so that processes opening a fresh database at once
    (a run and `esper serve`, say) do not both run a migration: a lock file beside a SQLite database, a
    session advisory lock on PostgreSQL."""
    database = engine.url.database
    if engine.url.get_backend_name() == "sqlite":
        if not database or database == ":memory:":
            yield
            return
        with open(f"{database}.migrate-lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(hashtext('esper.projections.migrate'))"))
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(hashtext('esper.projections.migrate'))"))


def open_db(url: str) -> Engine:
    """An engine on the projection database, upgraded to the current schema."""
    try:
        engine = create_db_engine(url)
        if current_revision(engine) != head_revision():
            with migration_lock(engine):
                if current_revision(engine) != head_revision():
                    upgrade(engine)
    except DatabaseError:
        raise
    except Exception as exc:
        raise DatabaseError(f"cannot open projection database {url}: {exc}") from exc
    return engine
