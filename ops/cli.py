"""The `esper` command line (SPEC §12).

Each subcommand lives in its own module under ops/commands/ with a `register(subparsers)` function;
modules are discovered, so adding a command touches no shared file. Errors the user can act on are one
line on stderr: exit 2 for bad usage, 1 for a detected problem.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from ops import commands
from ops.errors import CommandError, UsageError, user_facing_errors


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="esper",
        description="Esper grows a neural network during training under an event-sourced controller.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{module_info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
        return code
    except UsageError as exc:
        print(f"esper {args.command}: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"esper {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except user_facing_errors() as exc:
        print(f"esper {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"esper {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
