"""Options every `esper` subcommand takes (SPEC §12), and JSON output."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ops.errors import UsageError

DEFAULT_DATA_DIR = "./esper-data"


def data_dir_path(text: str) -> Path:
    """The --data-dir value: a directory, or a path where one can be created (not a regular file)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not a directory")
    return path


def add_data_dir_option(parser: argparse.ArgumentParser, default: Any = None) -> None:
    parser.add_argument(
        "--data-dir",
        type=data_dir_path,
        default=os.environ.get("ESPER_DATA_DIR", DEFAULT_DATA_DIR) if default is None else default,
        help="where the log, projections, artifacts and checkpoints live "
        "(default: $ESPER_DATA_DIR or ./esper-data)",
    )


def common_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    add_data_dir_option(parent)
    parent.add_argument("--json", action="store_true", help="print machine-readable JSON")
    return parent


def add_command(
    subparsers: Any,
    name: str,
    handler: Callable[[argparse.Namespace], int],
    help_text: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=help_text,
        description=description or help_text,
        parents=[common_options()],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    return parser


INT_LIMIT = 2**63  # a log position or an epoch is a signed 64-bit integer in every store


def position(text: str) -> int:
    """An argparse type for a log position or an epoch: an integer from 0 to 2**63 - 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value < INT_LIMIT:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 2**63 - 1")
    return value


def check_redis_url(url: str, option: str = "--redis") -> None:
    """UsageError unless url is a Redis URL the client accepts (redis://, rediss://, unix://)."""
    from eventstore.mirror import connect_redis

    try:
        connect_redis(url).close()
    except ValueError as exc:
        raise UsageError(f"{option}: not a Redis URL ({exc}); e.g. redis://localhost:6379/0") from None


def print_json(document: Any) -> None:
    json.dump(document, sys.stdout, sort_keys=False, default=str)
    sys.stdout.write("\n")
