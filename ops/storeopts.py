"""Where a command's event log lives: `--store URL` / $ESPER_STORE_URL, else `<data-dir>/log`.

Every command that opens the log calls `add_store_option(parser)` when registering and
`open_store_from_args(args, create=...)` when running; bad input becomes a one-line UsageError (exit 2)
or CommandError (exit 1), never a traceback.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from eventstore import CorruptLogError, EventStore, StoreUnavailable, is_database_url, open_store
from leyline.datadir import DataDir
from ops.errors import CommandError, UsageError

STORE_ENV = "ESPER_STORE_URL"


def add_store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        metavar="URL",
        default=None,
        help="a postgresql:// URL of the event store (default: $ESPER_STORE_URL, else <data-dir>/log)",
    )


def store_location(args: argparse.Namespace) -> str | Path:
    """The URL or directory the command's log is at."""
    url = getattr(args, "store", None) or os.environ.get(STORE_ENV)
    if url:
        if not is_database_url(url):
            raise UsageError(f"store URL {url!r} is not a postgresql:// URL (from --store or ${STORE_ENV})")
        return str(url)
    return DataDir.of(args.data_dir).log


def require_file_log(args: argparse.Namespace, location: Path) -> None:
    """UsageError unless --data-dir is a directory and the log's location in it exists."""
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise UsageError(
            f"data directory {data_dir} does not exist; pass --data-dir of an esper data directory"
        )
    if not location.exists():
        raise UsageError(
            f"{data_dir} holds no event log ({location} is missing); is it an esper data directory?"
        )


def open_store_from_args(args: argparse.Namespace, create: bool = False, **options: object) -> EventStore:
    location = store_location(args)
    if isinstance(location, str):
        try:
            return open_store(location, create=create, **options)
        except StoreUnavailable as exc:
            raise CommandError(f"cannot open the event store: {exc}") from None
    if create:
        DataDir.of(args.data_dir).create()  # private (0700/0600) whatever the umask
    else:
        require_file_log(args, location)
    try:
        return open_store(location, create=create, **options)
    except StoreUnavailable as exc:
        raise UsageError(str(exc)) from None
    except CorruptLogError as exc:
        raise CommandError(f"{exc}; run `esper verify` for details") from None
    except PermissionError as exc:
        raise CommandError(f"cannot open the event log at {location}: {exc.strerror}") from None
