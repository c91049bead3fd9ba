"""Options every `esper` subcommand takes (SPEC §12), and JSON output."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_DATA_DIR = "./esper-data"


def common_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("ESPER_DATA_DIR", DEFAULT_DATA_DIR)),
        help="where the log, projections, artifacts and checkpoints live "
        "(default: $ESPER_DATA_DIR or ./esper-data)",
    )
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


def print_json(document: Any) -> None:
    json.dump(document, sys.stdout, sort_keys=False, default=str)
    sys.stdout.write("\n")
