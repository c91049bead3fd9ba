"""The writing process's Redis mirror reports its health changes into the log (TelemetryReported from
`eventstore.mirror`), where Nissa raises and resolves mirror_redis_down as an alert of record: the log is
the source of truth, and it is writable while Redis is down."""

from __future__ import annotations

import logging
import time

from domains.nissa import rules
from eventstore import EventStore, EventStoreError
from eventstore.mirror import HealthListener
from leyline import new_envelope, pb

log = logging.getLogger("esper.mirror")


def log_reporter(store: EventStore) -> HealthListener:
    """A mirror health listener that appends each change to `store` (the store the mirror reads)."""

    def report(healthy: bool, lag: int, detail: str) -> None:
        packet = pb.TelemetryPacket(
            source=rules.MIRROR_TELEMETRY_SOURCE,
            timestamp_ms=int(time.time() * 1000),
            metrics=[pb.MetricPoint(name=rules.MIRROR_LAG_METRIC, value=float(lag))],
            events=[
                pb.TelemetryEvent(
                    name="redis_back" if healthy else "redis_down",
                    severity=pb.MESSAGE_PRIORITY_NORMAL if healthy else pb.MESSAGE_PRIORITY_HIGH,
                    message=detail,
                )
            ],
            health=pb.HEALTH_STATUS_HEALTHY if healthy else pb.HEALTH_STATUS_UNHEALTHY,
        )
        envelope = new_envelope(
            "TelemetryReported", rules.MIRROR_TELEMETRY_STREAM, packet, source=rules.MIRROR_TELEMETRY_SOURCE
        )
        try:
            store.append([envelope])
        except EventStoreError as exc:  # the mirror goes on; its metrics still show the outage
            log.warning("could not record the mirror's health in the log: %s", exc)

    return report
