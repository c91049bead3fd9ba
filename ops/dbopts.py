"""Where the projection database is: `--db URL` / $ESPER_DB_URL, else `<data-dir>/projections.sqlite`."""

from __future__ import annotations

import argparse
from pathlib import Path

from sqlalchemy import Engine

from ops.errors import CommandError
from projections.db import DatabaseError, open_db, resolve_url


def add_db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="URL",
        default=None,
        help="the projection database: a sqlite:/// or postgresql:// URL "
        "(default: $ESPER_DB_URL, else <data-dir>/projections.sqlite)",
    )


def db_url(args: argparse.Namespace) -> str:
    return resolve_url(Path(args.data_dir), getattr(args, "db", None))


def open_db_from_args(args: argparse.Namespace) -> Engine:
    try:
        return open_db(db_url(args))
    except DatabaseError as exc:
        raise CommandError(str(exc)) from None
