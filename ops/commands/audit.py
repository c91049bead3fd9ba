"""`esper audit seed|run|command|blueprint|policy ID [--as-of POS | --epoch N]` (SPEC §6, §12).

The read models are first brought up to date from the log (skip with --no-catch-up), then queried.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from tqdm import tqdm

from leyline.datadir import DataDir
from ops.audit_text import PRINTERS
from ops.common import add_command, position, print_json
from ops.dbopts import add_db_option, open_db_from_args
from ops.errors import CommandError, UsageError
from ops.plot import add_plot_option, write_plot
from ops.storeopts import add_store_option, open_store_from_args
from ops.verification import command_verification
from projections import ProjectionError, catch_up, status
from projections.audit import AUDITS, AuditError, NotFound


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "audit",
        handle,
        "what happened, and why: a seed, run, command, blueprint or policy",
        description='Answer "what happened, and why" from the read models.\n'
        "  seed RUN.SLOT   every transition with its gates, the commands and decisions behind it,\n"
        "                  its blueprint, field reports and gradient window (seed vs host per parameter)\n"
        "  run RUN         epochs, checkpoints, rollbacks and seeds\n"
        "  command ID      the state packet that prompted it, the decision (policy version, risk, reason,\n"
        "                  risk inputs) and its effects\n"
        "  blueprint BPnnn compile history, artifacts, grafts, how its seeds ended (fossilized, culled,\n"
        "                  terminated, with reasons) beside its field reports\n"
        "  policy VERSION  training, validation, activations and the decisions made with it\n"
        "Events superseded by a rollback are shown and marked. --as-of POS shows the state at log\n"
        "position POS; --epoch N at the run's epoch N (seed, run and command only).",
    )
    parser.add_argument("kind", choices=sorted(AUDITS), help="what to audit")
    parser.add_argument("id", metavar="ID", help="its id")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--as-of", type=position, metavar="POS", help="state as of this log position")
    when.add_argument("--epoch", type=position, metavar="N", help="state as of this epoch of the run")
    parser.add_argument(
        "--no-catch-up",
        action="store_true",
        help="query the read models as they are, without reading the log",
    )
    add_db_option(parser)
    add_store_option(parser)
    add_plot_option(parser)


def verify(args: argparse.Namespace, report: dict[str, Any]) -> dict[str, Any]:
    """Whether the command was verified (ops/verification.py), from its signed envelope in the log."""
    store = open_store_from_args(args, read_only=True)
    try:
        return command_verification(store, DataDir.of(args.data_dir), report["command_id"], report["effects"])
    finally:
        store.close()


def handle(args: argparse.Namespace) -> int:
    if args.plot and args.kind != "run":
        raise UsageError("--plot draws a run: use it with `esper audit run RUN`")
    engine = open_db_from_args(args)
    try:
        if not args.no_catch_up:
            store = open_store_from_args(args, read_only=True)
            try:
                head = store.head_position()
                behind_from = min(entry.position for entry in status(engine))
                with tqdm(
                    total=head,
                    initial=behind_from,
                    unit="pos",
                    desc="catching up",
                    leave=False,
                    disable=args.json or behind_from >= head,
                    file=sys.stderr,
                ) as bar:

                    def progress(position: int) -> None:
                        bar.update(position - bar.n)

                    catch_up(store, engine, progress=progress)
            finally:
                store.close()
        report = AUDITS[args.kind](engine, args.id, args.as_of, args.epoch)
        if args.kind == "command" and report["command"] is not None:
            report["command"]["verification"] = verify(args, report)
    except NotFound as exc:
        raise CommandError(str(exc)) from None
    except AuditError as exc:
        raise UsageError(str(exc)) from None
    except ProjectionError as exc:
        raise CommandError(str(exc)) from None
    except SQLAlchemyError as exc:
        raise CommandError(f"the projection database failed: {exc}") from None
    if args.json:
        print_json(report)
    else:
        PRINTERS[args.kind](report)
    if args.plot:
        write_plot(args, args.id)
    return 0
