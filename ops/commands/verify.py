"""`esper verify`: check the integrity of the whole event log (SPEC §12)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from eventstore import StoreUnavailable
from eventstore.verify import verify_location
from ops.common import add_command, print_json
from ops.errors import CommandError, UsageError
from ops.storeopts import add_store_option, require_file_log, store_location


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "verify",
        handle,
        "check the integrity of the whole event log",
        description="Read every record of the event log and check framing, CRC32C, positions, stream\n"
        "versions and batch commits. Names the segment, byte offset and global position of the\n"
        "first bad record. Exit 0 when the log is sound, 1 when it is damaged (a torn tail is\n"
        "repaired by `esper recover`; corruption before the tail is never skipped).",
    )
    add_store_option(parser)


def handle(args: argparse.Namespace) -> int:
    location = store_location(args)
    if isinstance(location, Path):
        require_file_log(args, location)
    with tqdm(
        desc="verify", unit="B", unit_scale=True, disable=args.json or not sys.stderr.isatty(), leave=False
    ) as bar:

        def progress(done: int) -> None:
            bar.n = done
            bar.refresh()

        try:
            report = verify_location(location, progress)
        except StoreUnavailable as exc:
            if isinstance(location, Path):
                raise UsageError(str(exc)) from None
            raise CommandError(str(exc)) from None
    if args.json:
        print_json(report.to_json())
    elif report.problem is None:
        print(
            f"log OK: {report.records} events in {report.segments} segments, {report.streams} streams, "
            f"head position {report.head} ({report.location})"
        )
    else:
        print(f"log DAMAGED after {report.records} sound events: {report.problem.describe()}")
    return 0 if report.ok else 1
