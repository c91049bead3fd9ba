"""Pure routing and backpressure rules of the Oona bus (no I/O): which queue, and whether to admit."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from leyline import pb


class Queue(StrEnum):
    EMERGENCY = "emergency"
    POLICY = "policy"
    NORMAL = "normal"
    FIELD_REPORTS = "field_reports"
    OVERFLOW = "overflow"
    TELEMETRY = "telemetry"


# Consumers drain in this order; the emergency queue always first.
DRAIN_ORDER: tuple[Queue, ...] = (
    Queue.EMERGENCY,
    Queue.POLICY,
    Queue.NORMAL,
    Queue.FIELD_REPORTS,
    Queue.OVERFLOW,
    Queue.TELEMETRY,
)


def route(envelope: pb.EventEnvelope) -> Queue:
    if envelope.priority == pb.MESSAGE_PRIORITY_EMERGENCY:
        return Queue.EMERGENCY
    if envelope.event_type == "TelemetryReported":
        return Queue.TELEMETRY
    if envelope.event_type.startswith("Policy"):
        return Queue.POLICY
    if envelope.event_type == "FieldReportIssued":
        return Queue.FIELD_REPORTS
    return Queue.NORMAL


@dataclass(frozen=True)
class Thresholds:
    """SPEC §11: above `reroute_above` pending entries normal traffic is rerouted to the overflow queue;
    above `drop_above`, droppable telemetry is dropped (and counted)."""

    reroute_above: int = 4000
    drop_above: int = 8000

    def __post_init__(self) -> None:
        if not 0 <= self.reroute_above <= self.drop_above:
            raise ValueError(
                f"backpressure thresholds need 0 <= reroute_above <= drop_above, "
                f"got {self.reroute_above} and {self.drop_above}"
            )


def admit(queue: Queue, depth: int, thresholds: Thresholds) -> Queue | None:
    """Where an entry routed to `queue` goes while the bus holds `depth` pending entries (None: dropped)."""
    if queue is Queue.TELEMETRY and depth > thresholds.drop_above:
        return None
    if queue is Queue.NORMAL and depth > thresholds.reroute_above:
        return Queue.OVERFLOW
    return queue


@dataclass(frozen=True)
class OonaKeys:
    """Redis keys of the bus under a prefix (the mirror's prefix)."""

    prefix: str = "esper"

    def queue(self, queue: Queue) -> str:
        return f"{self.prefix}:oona:{queue.value}"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}:oona:dead"

    def handled(self, group: str) -> str:
        """Sorted set event_id → position of what the group's handlers completed."""
        return f"{self.prefix}:oona:handled:{group}"

    def failures(self, group: str) -> str:
        """Hash '<queue> <entry id>' → last handler error, for entries not yet acked."""
        return f"{self.prefix}:oona:failures:{group}"
