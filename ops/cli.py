"""The `esper` command line (SPEC §12).

Each subcommand lives in its own module under ops/commands/, named like the command, with a
`register(subparsers)` function; modules are discovered, so adding a command touches no shared file. Only
the module of the command being run is imported; `esper` alone or `esper --help` imports none of them: it
lists each command with the one-line help its module passes to `add_command`, read from the module's
source (a module whose help is not a literal there is imported). No command module imports torch at
module level: handlers that train or compile import it. Errors the user can act on are one line on
stderr with the exit codes of ops/errors.py.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import os
import pkgutil
import sys
from collections.abc import Sequence
from pathlib import Path

from ops import commands
from ops.errors import CommandError, UsageError, disk_full_message, user_facing_errors


def command_names() -> list[str]:
    return sorted(info.name for info in pkgutil.iter_modules(commands.__path__))


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser for argv: the named command's, registered by its module, when argv names one; else the
    listing of every command by its summary, with no command module imported."""
    parser = argparse.ArgumentParser(
        prog="esper",
        description="Esper grows a neural network during training under an event-sourced controller.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    names = command_names()
    if argv and argv[0] in names:
        importlib.import_module(f"{commands.__name__}.{argv[0]}").register(subparsers)
        return parser
    for name in names:
        summary = command_summary(name)
        if summary is None:
            importlib.import_module(f"{commands.__name__}.{name}").register(subparsers)
        else:
            subparsers.add_parser(name, help=summary)
    return parser


def command_summary(name: str) -> str | None:
    """The literal one-line help a command module passes to add_command (its 4th argument), from its
    source; None when the module computes it."""
    spec = importlib.util.find_spec(f"{commands.__name__}.{name}")
    if spec is None or spec.origin is None:
        return None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "add_command"
            and len(node.args) >= 4
            and isinstance(node.args[3], ast.Constant)
            and isinstance(node.args[3].value, str)
        ):
            return node.args[3].value
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    undecodable = next((arg for arg in argv if not is_utf8(arg)), None)
    if undecodable is not None:
        print(f"esper: argument {undecodable!a} is not UTF-8 text", file=sys.stderr)
        return 2
    args = build_parser(argv).parse_args(argv)
    from leyline.datadir import private_umask  # after parsing: `esper --help` imports no protobuf

    private_umask()  # what any command creates under a data directory is private (leyline.datadir)
    try:
        code: int = args.handler(args)
        return code
    except UsageError as exc:
        report(args.command, str(exc))
        return 2
    except CommandError as exc:
        report(args.command, str(exc))
        return exc.exit_code
    except user_facing_errors() as exc:
        report(args.command, disk_full_message(exc) or str(exc))
        return 1
    except KeyboardInterrupt:
        print(f"esper {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`esper replay | head`): silence the flush at exit as well
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        message = disk_full_message(exc, args.data_dir)
        if message is None:
            raise
        report(args.command, message)
        return 1


def report(command: str, message: str) -> None:
    """The error as one line on stderr: the first line of a message that has several (a database
    driver's error adds its SQL and a link)."""
    lines = message.strip().splitlines() or [""]
    print(f"esper {command}: {lines[0]}", file=sys.stderr)


def is_utf8(arg: str) -> bool:
    """False for an argument holding bytes that are not UTF-8 (Python passes them as lone surrogates)."""
    try:
        arg.encode()
    except UnicodeEncodeError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
