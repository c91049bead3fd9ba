"""Errors the command line turns into one line and an exit code."""

from __future__ import annotations


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
