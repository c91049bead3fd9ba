"""What the projections report to their callers: errors, and where a projection stopped."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


class ProjectionError(Exception):
    """A projection cannot be run as asked (unknown name, a bad setting, a rebuild that stopped, …)."""


@dataclass(frozen=True)
class Stop:
    """The event a projection could not decode or apply: it stays just below it until rebuilt."""

    position: int
    event_type: str
    reason: str

    def describe(self, name: str) -> str:
        return (
            f"projection {name} stopped at position {self.position} ({self.event_type}): {self.reason}; "
            f"after fixing its upcaster or projector, run `esper rebuild {name}`"
        )


class ProjectionStopped(ProjectionError):
    """A rebuild that reached an event a projection cannot apply; `stops` maps projection name → Stop."""

    def __init__(self, stops: Mapping[str, Stop]) -> None:
        super().__init__("; ".join(stop.describe(name) for name, stop in stops.items()))
        self.stops = dict(stops)
