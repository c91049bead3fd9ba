"""The `esper` command line (SPEC §12).

Each subcommand lives in its own module under ops/commands/, named like the command, with a
`register(subparsers)` function; modules are discovered, so adding a command touches no shared file. Only
the module of the command being run is imported (several import torch, which takes seconds); `esper`
alone or `esper --help` imports them all to list them. Errors the user can act on are one line on
stderr: exit 2 for bad usage, 1 for a detected problem.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from leyline.datadir import private_umask
from ops import commands
from ops.errors import CommandError, UsageError, user_facing_errors


def command_names() -> list[str]:
    return sorted(info.name for info in pkgutil.iter_modules(commands.__path__))


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser for argv: with only the named command's module when argv names one, else all."""
    parser = argparse.ArgumentParser(
        prog="esper",
        description="Esper grows a neural network during training under an event-sourced controller.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    names = command_names()
    if argv and argv[0] in names:
        names = [argv[0]]
    for name in names:
        importlib.import_module(f"{commands.__name__}.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    private_umask()  # what any command creates under a data directory is private (leyline.datadir)
    args = build_parser(argv).parse_args(argv)
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
    except BrokenPipeError:
        # the reader went away (`esper replay | head`): silence the flush at exit as well
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
