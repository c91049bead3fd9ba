"""Oona: the bus on Redis Streams (SPEC §11). Queues are fed by the log's mirror (eventstore.mirror).

Routing (`domains.oona.routing.route`), by the envelope:

| queue          | what                                                   | under backpressure            |
|----------------|--------------------------------------------------------|-------------------------------|
| emergency      | priority MESSAGE_PRIORITY_EMERGENCY (any type)         | never delayed or dropped      |
| policy         | Policy* events (trained, validated, published, …)      | never delayed or dropped      |
| field_reports  | FieldReportIssued                                      | never delayed or dropped      |
| telemetry      | TelemetryReported                                      | dropped above `drop_above`    |
| normal         | everything else                                        | rerouted to `overflow` above  |
|                |                                                        | `reroute_above`               |

Consumers drain queues in the order emergency, policy, normal, field_reports, overflow, telemetry: the
emergency queue is drained before anything else. Every event still lands in its per-category mirror
stream, and every event lives in the log: a dropped telemetry entry is only missing from the bus.
"""
