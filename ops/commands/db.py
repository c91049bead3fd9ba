"""`esper db upgrade|status`: the projection database's schema (alembic migrations)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ops.common import add_command, print_json
from ops.dbopts import add_db_option, db_url
from ops.errors import CommandError

if TYPE_CHECKING:
    from projections.runner import ProjectionStatus


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "db",
        handle,
        "upgrade or inspect the projection database schema",
        description="Manage the projection database schema (alembic migrations in migrations/).\n"
        "  upgrade   bring the schema to the newest revision (also done whenever a command opens it)\n"
        "  status    print the database's revision, the newest one this code has, and each projection's\n"
        "            checkpoint; exit 1 when one is stopped at an event it cannot apply",
    )
    parser.add_argument("action", choices=["upgrade", "status"], help="what to do")
    add_db_option(parser)


def handle(args: argparse.Namespace) -> int:
    # imported here, not at registration: `esper db --help` imports no SQLAlchemy or alembic
    from sqlalchemy.exc import SQLAlchemyError

    from projections import ProjectionError, status
    from projections.db import DatabaseError, create_db_engine, current_revision, head_revision, upgrade

    url = db_url(args)
    document: dict[str, Any]
    stopped = False
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
            projections = status(engine) if current == head else []
            document = {
                "db": engine.url.render_as_string(hide_password=True),
                "revision": current,
                "head": head,
                "up_to_date": current == head,
                "projections": [_projection(entry) for entry in projections],
            }
            message = "\n".join(
                [
                    f"revision {current or 'none (empty database)'}, newest {head}"
                    + ("" if current == head else ": run `esper db upgrade`"),
                    *(_describe(entry) for entry in projections),
                ]
            )
            stopped = any(entry.stop is not None for entry in projections)
    except (DatabaseError, ProjectionError) as exc:
        raise CommandError(str(exc)) from None
    except (SQLAlchemyError, OSError) as exc:
        raise CommandError(f"cannot use the projection database {url}: {exc}") from None
    if args.json:
        print_json(document)
    else:
        print(message)
    return 1 if stopped else 0


def _projection(entry: ProjectionStatus) -> dict[str, Any]:
    stop = entry.stop
    return {
        "name": entry.name,
        "position": entry.position,
        "stored_version": entry.stored_version,
        "code_version": entry.code_version,
        "stopped": None
        if stop is None
        else {"position": stop.position, "event_type": stop.event_type, "reason": stop.reason},
    }


def _describe(entry: ProjectionStatus) -> str:
    if entry.stop is not None:
        return f"  {entry.stop.describe(entry.name)}"
    version = f"version {entry.stored_version}" if entry.stored_version is not None else "never built"
    stale = f", code has version {entry.code_version}: run `esper rebuild`" if entry.stale else ""
    return f"  {entry.name}: position {entry.position} ({version}{stale})"
