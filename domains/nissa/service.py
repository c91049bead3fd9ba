"""Nissa at the edge: follows the log, evaluates the alert conditions, appends AlertFired/AlertResolved and
routes each newly appended one to its channels.

The state is rebuilt by evaluating the log from its start (the conditions are cheap and only a few event
types are read); alerts already in the log are not appended again (their ids are deterministic) nor routed
again (only an append that lands beyond the head seen before it is new).
"""

from __future__ import annotations

import threading

from domains.nissa import conditions, metrics
from domains.nissa.routing import Router
from eventstore import EventFilter, EventStore
from leyline import pb

EVENT_FILTER = EventFilter(event_types=conditions.EVENT_TYPES - conditions.ALERT_EVENTS)


class Nissa:
    def __init__(self, store: EventStore, router: Router | None = None) -> None:
        self.store = store
        self.router = router or Router([])
        self.state = conditions.State()
        self.position = 0

    def _apply(self, envelope: pb.EventEnvelope) -> None:
        self.state = conditions.evolve(self.state, envelope)
        alerts = conditions.decide(self.state, envelope)
        if alerts:
            head = self.store.head_position()
            positions = self.store.append(alerts)
            for alert, position in zip(alerts, positions, strict=True):
                self.state = conditions.evolve(self.state, alert)
                if position > head:
                    alert.global_position = position
                    rule = alert.stream.removeprefix("alert-")
                    metrics.ALERT_EVENTS.labels(rule, alert.event_type).inc()
                    self.router.route(alert)
            metrics.FIRING.set(len(self.state.firing))
        self.position = envelope.global_position

    def evaluate(self, events: list[pb.EventEnvelope]) -> None:
        for envelope in events:
            self._apply(envelope)
        metrics.EVALUATED_POSITION.set(self.position)

    def catch_up(self) -> int:
        """Evaluate everything up to the head of the log; returns the head."""
        head = self.store.head_position()
        if self.position < head:
            self.evaluate(
                list(self.store.read_all(self.position + 1, event_filter=EVENT_FILTER, to_position=head))
            )
        self.position = max(self.position, head)
        return head

    def follow(self, stop: threading.Event, poll_timeout: float = 0.05) -> None:
        """Catch up, then evaluate new events as they are committed until `stop` is set."""
        self.catch_up()
        subscription = self.store.subscribe(
            self.position + 1, event_filter=EVENT_FILTER, timeout=poll_timeout
        )
        try:
            while not stop.is_set():
                events = subscription.poll(timeout=poll_timeout)
                if events:
                    self.evaluate(events)
        finally:
            subscription.close()
