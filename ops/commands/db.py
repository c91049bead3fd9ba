"""`esper db upgrade|status`: the projection database's schema (alembic migrations)."""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from ops.common import add_command, print_json
from ops.dbopts import add_db_option, db_url
from ops.errors import CommandError
from projections.db import DatabaseError, create_db_engine, current_revision, head_revision, upgrade


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "db",
        handle,
        "upgrade or inspect the projection database schema",
        description="Manage the projection database schema (alembic migrations in migrations/).\n"
        "  upgrade   bring the schema to the newest revision (also done whenever a command opens it)\n"
        "  status    print the database's revision and the newest one this code has",
    )
    parser.add_argument("action", choices=["upgrade", "status"], help="what to do")
    add_db_option(parser)


def handle(args: argparse.Namespace) -> int:
    url = db_url(args)
    document: dict[str, Any]
    try:
        engine = create_db_engine(url)
        if args.action == "upgrade":
            before, after = upgrade(engine)
            document = {"db": engine.url.render_as_string(hide_password=True), "from": before, "to": after}
            message = (
                f"already at revision {after}"
                if before == after
                else f"upgraded from {before or 'empty'} to {after}"
            )
        else:
            current, head = current_revision(engine), head_revision()
            document = {
                "db": engine.url.render_as_string(hide_password=True),
                "revision": current,
                "head": head,
                "up_to_date": current == head,
            }
            message = f"revision {current or 'none (empty database)'}, newest {head}" + (
                "" if current == head else ": run `esper db upgrade`"
            )
    except DatabaseError as exc:
        raise CommandError(str(exc)) from None
    except (SQLAlchemyError, OSError) as exc:
        raise CommandError(f"cannot use the projection database {url}: {exc}") from None
    if args.json:
        print_json(document)
    else:
        print(message)
    return 0
