"""Prometheus metrics of the Oona bus (SPEC §11: queue depth, redeliveries, dead letters, drops)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

QUEUE_DEPTH = Gauge(
    "esper_oona_queue_depth_messages",
    "Entries of a queue its slowest consumer group has not passed (0 when no group consumes it)",
    ["queue"],
)
BUS_DEPTH = Gauge(
    "esper_oona_bus_depth_messages",
    "Entries pending over all Oona queues: what the backpressure thresholds compare against",
)
PUBLISHED = Counter("esper_oona_published_messages_total", "Entries routed onto an Oona queue", ["queue"])
REROUTED = Counter(
    "esper_oona_rerouted_messages_total",
    "Normal entries rerouted to the overflow queue because the bus was above its reroute threshold",
)
DROPPED = Counter(
    "esper_oona_dropped_messages_total",
    "Droppable entries (telemetry) not queued because the bus was above its drop threshold",
    ["queue"],
)
HANDLED = Counter("esper_oona_handled_messages_total", "Entries a handler completed and acked", ["queue"])
DUPLICATES = Counter(
    "esper_oona_duplicate_messages_total",
    "Entries acked without calling the handler: their event_id was already handled by the group",
    ["queue"],
)
FAILURES = Counter("esper_oona_handler_failures_total", "Handler calls that raised", ["queue"])
REDELIVERIES = Counter(
    "esper_oona_redeliveries_total",
    "Entries reclaimed (XAUTOCLAIM) after sitting unacknowledged beyond the idle timeout",
    ["queue"],
)
DEAD_LETTERS = Counter(
    "esper_oona_dead_letters_total", "Entries moved to the dead-letter stream after N attempts", ["queue"]
)
