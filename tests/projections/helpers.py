"""Shared helpers: fresh databases, table dumps, logs in a real file store."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from eventstore import EventStore, open_store
from leyline import pb
from projections.db import create_db_engine, open_db
from projections.schema import metadata
from tests.postgres import scratch_database

_TEMPLATES: dict[str, Path] = {}


def fresh_sqlite(directory: Path, name: str = "projections.sqlite") -> Engine:
    """A migrated SQLite database: alembic runs once per session, later ones copy its result."""
    template = _TEMPLATES.get("sqlite")
    if template is None or not template.exists():
        template = Path(directory) / f"template-{uuid.uuid4().hex}.sqlite"
        open_db(f"sqlite:///{template}").dispose()
        _TEMPLATES["sqlite"] = template
    target = Path(directory) / name
    shutil.copyfile(template, target)
    return create_db_engine(f"sqlite:///{target}")


def postgres_database() -> AbstractContextManager[str]:
    """A uniquely named PostgreSQL database, dropped afterwards; yields its SQLAlchemy URL."""
    return scratch_database("esper_proj", driver="postgresql+psycopg")


def dump(engine: Engine, include_checkpoints: bool = False) -> dict[str, list[tuple[Any, ...]]]:
    """Every read-model row, ordered by key, for comparisons."""
    result = {}
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            if table.name == "projection_checkpoints" and not include_checkpoints:
                continue
            columns = [
                c
                for c in table.columns
                if not (table.name == "projection_checkpoints" and c.name == "updated_at_ns")
            ]
            order = list(table.primary_key.columns)
            result[table.name] = [tuple(row) for row in connection.execute(select(*columns).order_by(*order))]
    return result


def unpositioned(events: Sequence[pb.EventEnvelope]) -> list[pb.EventEnvelope]:
    """Copies of events with no global position, ready to append."""
    copies = []
    for envelope in events:
        copy = pb.EventEnvelope()
        copy.CopyFrom(envelope)
        copy.global_position = 0
        copies.append(copy)
    return copies


def to_store(path: Path, events: Sequence[pb.EventEnvelope], batch: int = 500) -> EventStore:
    """Append events to a new file store in order (they get the positions the simulator assigned)."""
    store = open_store(path)
    for start in range(0, len(events), batch):
        store.append(unpositioned(events[start : start + batch]))
    return store
