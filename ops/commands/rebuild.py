"""`esper rebuild [NAME ... | --all] [--blue-green]`: rebuild read models from the log (SPEC §6)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from tqdm import tqdm

from ops.common import add_command, print_json
from ops.dbopts import add_db_option, open_db_from_args
from ops.errors import CommandError, UsageError
from ops.storeopts import add_store_option, open_store_from_args
from projections import PROJECTION_NAMES, ProjectionError, rebuild, stale


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "rebuild",
        handle,
        "rebuild read models from the event log",
        description="Rebuild projections from position 1 of the log.\n"
        "With no NAME and no --all, only the projections whose code changed (their stored version\n"
        "differs from the code's) are rebuilt. In place, the rebuild runs in one transaction: readers\n"
        "keep the old rows until it commits, and writers wait. --blue-green builds new tables while the\n"
        "live ones keep serving and updating, then swaps them in one transaction.\n"
        "A projection stopped at an event it cannot decode or apply (`esper db status` names it) resumes\n"
        "with `esper rebuild NAME` once its upcaster or projector is fixed; until then the rebuild stops\n"
        "at the same event again (exit 1), and a blue/green one swaps nothing in.\n"
        f"Projections: {', '.join(PROJECTION_NAMES)}.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="projections to rebuild")
    parser.add_argument("--all", action="store_true", help="rebuild every projection")
    parser.add_argument(
        "--blue-green", action="store_true", help="build new tables, then swap them in atomically"
    )
    add_db_option(parser)
    add_store_option(parser)


def handle(args: argparse.Namespace) -> int:
    if args.all and args.names:
        raise UsageError("give projection names or --all, not both")
    unknown = [name for name in args.names if name not in PROJECTION_NAMES]
    if unknown:
        raise UsageError(f"unknown projection {unknown[0]!r}; choose from: {', '.join(PROJECTION_NAMES)}")
    engine = open_db_from_args(args)
    names = list(PROJECTION_NAMES) if args.all else args.names or stale(engine)
    if not names:
        message = "every projection is current (versions match the code); use --all or NAME to force"
        if args.json:
            print_json({"rebuilt": {}, "message": message})
        else:
            print(message)
        return 0
    store = open_store_from_args(args, read_only=True)
    started = time.perf_counter()
    try:
        head = store.head_position()
        with tqdm(total=head, unit="pos", desc="rebuild", disable=args.json, file=sys.stderr) as bar:

            def progress(position: int) -> None:
                bar.update(position - bar.n)

            positions = rebuild(store, engine, names, blue_green=args.blue_green, progress=progress)
            bar.update(head - bar.n)
    except ProjectionError as exc:
        raise CommandError(str(exc)) from None
    except SQLAlchemyError as exc:
        raise CommandError(f"the projection database failed during the rebuild: {exc}") from None
    finally:
        store.close()
    elapsed = time.perf_counter() - started
    mode = "blue/green" if args.blue_green else "in place"
    if args.json:
        print_json({"rebuilt": positions, "mode": mode, "seconds": round(elapsed, 3)})
    else:
        for name, position in positions.items():
            print(f"{name}: rebuilt {mode} up to position {position}")
        print(f"done in {elapsed:.1f} s")
    return 0
