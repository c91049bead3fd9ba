"""What a bus (Oona) plugs into the mirror: the keys each event also goes to, and the queue depths."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from leyline import pb


@dataclass(frozen=True)
class KeyState:
    """A stream with consumer groups: where its slowest group is and how many entries it has not passed."""

    passed: int  # position the slowest group has passed (oldest pending - 1, else last delivered)
    depth: int  # entries after `passed` (the stream is trimmed to exactly those)


class Fanout(Protocol):
    """Adds bus queues to the mirror (Oona): which keys an event also goes to, given the queue depths."""

    def queue_keys(self) -> Sequence[str]: ...

    def observe(self, states: Mapping[str, KeyState]) -> None:
        """The state of each of its keys that has consumer groups, sampled by the mirror."""
        ...

    def targets(self, envelope: pb.EventEnvelope) -> Sequence[str]: ...
