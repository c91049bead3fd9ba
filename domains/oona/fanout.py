"""Publishing onto the Oona bus: the mirror's fanout onto the queues, and the writing process's mirror.

`OonaFanout` plugs into `eventstore.mirror.Mirror`, so every queue entry is an event of the log with the id
`<global position>-0`. It routes by `routing.route` and applies backpressure from the depths the mirror
samples (entries the slowest consumer group of each queue has not passed, summed over queues).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from domains.oona.metrics import BUS_DEPTH, DROPPED, PUBLISHED, QUEUE_DEPTH, REROUTED
from domains.oona.routing import OonaKeys, Queue, Thresholds, admit, route
from eventstore.api import EventStore
from eventstore.mirror import DEFAULT_PREFIX, HealthListener, KeyState, MirrorThread
from leyline import pb


class OonaFanout:
    """The mirror's fanout onto the Oona queues, with backpressure (implements eventstore.mirror.Fanout)."""

    def __init__(self, keys: OonaKeys | None = None, thresholds: Thresholds | None = None) -> None:
        self.oona_keys = keys or OonaKeys()
        self.thresholds = thresholds or Thresholds()
        self._queue_keys = {queue: self.oona_keys.queue(queue) for queue in Queue}
        self._passed: dict[Queue, int] = {}
        # labelled children resolved once: targets() runs for every mirrored event
        self._published_counter = {queue: PUBLISHED.labels(queue.value) for queue in Queue}
        self._dropped_counter = {queue: DROPPED.labels(queue.value) for queue in Queue}
        self.depth = 0
        self.rerouted = 0
        self.dropped = 0

    def queue_keys(self) -> Sequence[str]:
        return list(self._queue_keys.values())

    def observe(self, states: Mapping[str, KeyState]) -> None:
        self._passed = {queue: states[key].passed for queue, key in self._queue_keys.items() if key in states}
        for queue, key in self._queue_keys.items():
            QUEUE_DEPTH.labels(queue.value).set(states[key].depth if key in states else 0)
        self.depth = sum(state.depth for state in states.values())
        BUS_DEPTH.set(self.depth)

    def targets(self, envelope: pb.EventEnvelope) -> Sequence[str]:
        wanted = route(envelope)
        if envelope.global_position <= self._passed.get(wanted, 0):
            # re-mirrored (reseed, rewind) and already passed by every group: back where it was routed,
            # where Redis rejects or the next trim removes it; no pressure applies and nothing is counted
            return (self._queue_keys[wanted],)
        queue = admit(wanted, self.depth, self.thresholds)
        if queue is None:
            self.dropped += 1
            self._dropped_counter[wanted].inc()
            return ()
        if queue is not wanted:
            self.rerouted += 1
            REROUTED.inc()
        self._published_counter[queue].inc()
        if queue in self._passed:
            self.depth += 1  # pending until a consumer passes it: keeps the estimate current between samples
        return (self._queue_keys[queue],)


def start_mirror(
    store: EventStore,
    redis_url: str,
    data_dir: Path,
    *,
    prefix: str = DEFAULT_PREFIX,
    thresholds: Thresholds | None = None,
    idle_timeout: float = 0.2,
    on_health: HealthListener | None = None,
) -> MirrorThread:
    """The writing process's background mirror onto the category streams and the Oona queues (e.g.
    `esper run` with REDIS_URL): appends never wait on it; call `.stop()` at the end of the run."""
    fanout = OonaFanout(OonaKeys(prefix), thresholds)
    return MirrorThread(
        store,
        redis_url,
        data_dir,
        prefix=prefix,
        fanout=fanout,
        idle_timeout=idle_timeout,
        on_health=on_health,
    ).start()
