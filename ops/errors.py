"""Errors the command line turns into one line and an exit code (README, "Exit codes").

0 success; 1 a detected problem (a damaged log, a failed run, an id that names nothing, a service that does
not answer, a full disk); 2 bad usage (an unknown command or option, a malformed or out-of-range value, an
unsupported URL scheme, an argument that is not UTF-8, a data directory that is not one).
"""

from __future__ import annotations

from pathlib import Path


class UsageError(Exception):
    """Bad usage: exit 2."""


class CommandError(Exception):
    """A detected problem: exit 1 (or the code given)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def user_facing_errors() -> tuple[type[BaseException], ...]:
    """Library errors whose message is meant for the user (printed as one line, exit 1)."""
    from eventstore.api import EventStoreError
    from leyline.errors import LeylineError

    return (EventStoreError, LeylineError)


def disk_full_message(error: BaseException, data_dir: Path | None = None) -> str | None:
    """The one line for a full disk anywhere in error's chain (an append's DiskFull, or an out-of-space
    OSError of any other write, e.g. a checkpoint's), else None."""
    from eventstore import DiskFull
    from eventstore.api import DISK_FULL_ERRNOS

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DiskFull):
            return str(current)
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            where = current.filename or (f"under {data_dir}" if data_dir is not None else "")
            return str(DiskFull(str(where)))
        current = current.__cause__ or current.__context__
    return None
