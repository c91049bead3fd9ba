"""Where the projection database is: `--db URL` / $ESPER_DB_URL, else `<data-dir>/projections.sqlite`.

SQLAlchemy and the projections (alembic) are imported when a command runs, not when it registers: `esper db
--help` stays quick.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ops.errors import CommandError, UsageError

if TYPE_CHECKING:
    from sqlalchemy import Engine

BACKENDS = ("sqlite", "postgresql")


def add_db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="URL",
        default=None,
        help="the projection database: a sqlite:/// or postgresql:// URL "
        "(default: $ESPER_DB_URL, else <data-dir>/projections.sqlite)",
    )


def db_url(args: argparse.Namespace) -> str:
    """The database URL; UsageError for one that does not parse or names another kind of database."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from projections.db import resolve_url

    url = resolve_url(Path(args.data_dir), getattr(args, "db", None))
    try:
        backend = make_url(url).get_backend_name()
    except (ArgumentError, ValueError) as exc:
        raise UsageError(f"--db: not a database URL ({exc}); e.g. postgresql://host/db") from None
    if backend not in BACKENDS:
        raise UsageError(f"--db {backend}:// is not supported; use a sqlite:/// or postgresql:// URL")
    return url


def open_db_from_args(args: argparse.Namespace) -> Engine:
    from projections.db import DatabaseError, open_db

    url = db_url(args)
    try:
        return open_db(url)
    except DatabaseError as exc:
        raise CommandError(str(exc)) from None
