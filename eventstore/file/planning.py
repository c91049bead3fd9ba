"""What one append request of a group commit writes: its events' positions, deduplicated by event id, its
expected versions checked, and the new events' streams, fingerprints and payloads (the writer frames them,
numbering their stream versions as it goes: walbatch.frame_new).

Per-event work is done a batch at a time (eventstore.walbatch: compiled, or C-level maps and set
operations). A group's state is two dicts that the writer passes from request to request: `versions`
(stream -> version counting what the group wrote so far) and `ids` (event id -> position, of the group's
earlier requests, filled only when later requests follow).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Mapping
from operator import attrgetter

from eventstore import metrics, walbatch
from eventstore.api import EventStoreError, Expected
from eventstore.file.segments import LogIndex
from leyline import pb

BACKEND = "file"
SERIALIZE = pb.EventEnvelope.SerializeToString
EVENT_ID = attrgetter("event_id")
# the new events of a request, in position order: streams, fingerprints, payloads
Batch = tuple[list[str], walbatch.Fps, list[bytes]]


class Planner:
    """Plans requests against `log`; `read_envelope(position)` reads a committed event (to confirm an
    idempotency-index hit, fingerprints being able to collide)."""

    def __init__(self, log: LogIndex, read_envelope: Callable[[int], pb.EventEnvelope]) -> None:
        self.log = log
        self.read_envelope = read_envelope

    def plan(
        self,
        events: list[pb.EventEnvelope],
        expected: Mapping[str, Expected],
        versions: dict[str, int],
        group_ids: dict[str, int],
        next_position: int,
        others_follow: bool,
    ) -> tuple[list[int], Batch | None]:
        """Positions of the request's events, and the batch of new ones to frame (None if there is none);
        EventStoreError if an expected version does not hold."""
        if not events:
            return [], None
        payloads = list(map(SERIALIZE, events))
        names, fps = walbatch.keys(events, payloads)
        hits = self.log.ids.candidates(fps)
        # distinct fingerprints mean distinct ids; the ids themselves are read only where needed
        fast = not hits and walbatch.distinct(fps)
        ids = list(map(EVENT_ID, events)) if group_ids or others_follow or not fast else []
        if fast and (not group_ids or group_ids.keys().isdisjoint(ids)):
            positions = list(range(next_position, next_position + len(events)))  # the common case
        else:
            fresh, positions = self._deduplicate(ids, hits, group_ids, next_position)
            if len(fresh) < len(events):
                metrics.DUPLICATES.labels(BACKEND).inc(len(events) - len(fresh))
                if not fresh:
                    return positions, None
                ids = [ids[index] for index in fresh]
                names = [names[index] for index in fresh]
                fps = array("Q", [fps[index] for index in fresh])
                payloads = [payloads[index] for index in fresh]
        if expected:
            self._check(expected, versions)
        if others_follow:  # later requests of the group check their ids against these
            group_ids.update(zip(ids, range(next_position, next_position + len(ids)), strict=True))
        return positions, (names, fps, payloads)

    def _check(self, expected: Mapping[str, Expected], versions: dict[str, int]) -> None:
        """Each expected version against the stream's version counting what the group wrote so far."""
        for stream, expectation in expected.items():
            version = versions.get(stream)
            try:
                expectation.check(stream, self.log.stream_version(stream) if version is None else version)
            except EventStoreError:
                metrics.CONFLICTS.labels(BACKEND).inc()
                raise

    def _deduplicate(
        self, ids: list[str], hits: dict[int, list[int]], group_ids: dict[str, int], next_position: int
    ) -> tuple[list[int], list[int]]:
        """Indexes of the events not stored yet, and every event's position (new ones numbered in order)."""
        fresh: list[int] = []
        positions: list[int] = []
        local: dict[str, int] = {}
        for index, event_id in enumerate(ids):
            known = local.get(event_id) or group_ids.get(event_id)
            if known is None and index in hits:
                known = self._confirm(hits[index], event_id)
            if known is None:
                known = local[event_id] = next_position + len(fresh)
                fresh.append(index)
            positions.append(known)
        return fresh, positions

    def _confirm(self, candidates: list[int], event_id: str) -> int | None:
        """The candidate position whose stored event really has this id (fingerprints can collide)."""
        for position in candidates:
            if position <= self.log.head and self.read_envelope(position).event_id == event_id:
                return position
        return None
