"""`esper recover`: truncate a torn tail of the log, then bring what depends on it up to date (SPEC §12).

Recovery is a list of steps run in order; each returns what it did, for the human and the --json output.
A step receives the parsed arguments and the opened store.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from eventstore import EventStore
from ops.common import add_command, print_json
from ops.dbopts import add_db_option, open_db_from_args
from ops.errors import CommandError
from ops.storeopts import add_store_option, open_store_from_args

Step = Callable[[argparse.Namespace, EventStore], dict[str, Any]]


def recover_log(args: argparse.Namespace, store: EventStore) -> dict[str, Any]:
    """Opening the store already did the log's recovery: report it."""
    from eventstore.file import FileStore

    if isinstance(store, FileStore):
        report = store.recovery
        return {
            "step": "log",
            "did": report.describe(),
            "truncated_bytes": report.truncated_bytes,
            "head": report.head,
            "duration_s": round(report.duration_s, 6),
        }
    return {
        "step": "log",
        "did": "nothing to truncate: the database commits appends atomically",
        "truncated_bytes": 0,
        "head": store.head_position(),
    }


def catch_up_projections(args: argparse.Namespace, store: EventStore) -> dict[str, Any]:
    """Bring every read model up to the recovered head (their batches commit with their checkpoints)."""
    from projections import catch_up  # here, not at registration: `esper recover --help` loads no SQLAlchemy

    engine = open_db_from_args(args)
    try:
        result = catch_up(store, engine)
    finally:
        engine.dispose()
    applied = sum(result.applied.values())
    reached = "all" if not result.stopped else f"all but {', '.join(result.stopped)} (stopped)"
    return {
        "step": "projections",
        "did": f"applied {applied} event(s) to the read models, {reached} now at position {result.head}",
        "applied": result.applied,
        "positions": result.positions,
        "stopped": {name: stop.describe(name) for name, stop in result.stopped.items()},
    }


STEPS: list[Step] = [recover_log, catch_up_projections]


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "recover",
        handle,
        "truncate a torn log tail and bring projections up to date",
        description="Open the event log under its lock, scan it, truncate a torn final record (a crash\n"
        "in the middle of an append) and report what was done. Corruption before the tail is not\n"
        "repaired: the command fails and `esper verify` names the record. Then every read model\n"
        "catches up with the log (each batch commits with its checkpoint, so nothing is applied twice).",
    )
    add_store_option(parser)
    add_db_option(parser)


def handle(args: argparse.Namespace) -> int:
    store = open_store_from_args(args, create=False)
    try:
        steps = [step(args, store) for step in STEPS]
    finally:
        store.close()
    if args.json:
        print_json({"steps": steps})
    else:
        for step in steps:
            print(f"{step['step']}: {step['did']}")
    stopped = [message for step in steps for message in step.get("stopped", {}).values()]
    if stopped:
        raise CommandError("; ".join(stopped))
    return 0
