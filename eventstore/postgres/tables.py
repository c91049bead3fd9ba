"""The PostgreSQL store's tables, in a schema of their own (`esper` by default), and its URLs.

events: position primary key, event_id unique for idempotency, stream + stream_version unique, category,
event_type, the stamped envelope bytes (a stream's version is its highest stream_version, one probe of
the stream + stream_version index); head: the last position; snapshots.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import make_url

SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def libpq_url(url: str) -> str:
    """The URL as psycopg's own connect() takes it (no SQLAlchemy driver name), password included."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def engine_url(url: str) -> sa.URL:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


@dataclass(frozen=True)
class Tables:
    metadata: sa.MetaData
    events: sa.Table
    head: sa.Table
    snapshots: sa.Table


def define_tables(schema: str) -> Tables:
    if not SCHEMA_NAME.match(schema):
        raise ValueError(f"schema name {schema!r} must be a lower-case SQL identifier")
    metadata = sa.MetaData(schema=schema)
    events = sa.Table(
        "events",
        metadata,
        sa.Column("position", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("event_id", sa.Text, nullable=False, unique=True),
        sa.Column("stream", sa.Text, nullable=False),
        sa.Column("stream_version", sa.BigInteger, nullable=False),
        sa.Column("category", sa.Text, nullable=False, index=True),
        sa.Column("event_type", sa.Text, nullable=False, index=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("stream", "stream_version"),
    )
    head = sa.Table(
        "head",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("position", sa.BigInteger, nullable=False),
    )
    snapshots = sa.Table(
        "snapshots",
        metadata,
        sa.Column("stream", sa.Text, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.Column("checksum", sa.BigInteger, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    return Tables(metadata, events, head, snapshots)
