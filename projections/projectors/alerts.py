"""The alerts read model: each alert's current state and its firing/resolving events."""

from __future__ import annotations

from google.protobuf.message import Message

from leyline import pb
from projections import schema
from projections.projectors.base import (
    Change,
    Options,
    Projection,
    as_json,
    blank_row,
    insert_statement,
    keep_old,
    or_none,
    upsert_statement,
)

ALERT_COLUMNS = tuple(schema.alerts.columns.keys())
UPSERT_ALERT = upsert_statement(
    schema.alerts,
    "upsert_alert",
    ("name",),
    ALERT_COLUMNS,
    keep_old("alerts", ALERT_COLUMNS[1:]),
)
INSERT_ALERT_EVENT = insert_statement(schema.alert_events)


def project(envelope: pb.EventEnvelope, payload: Message) -> list[Change]:
    if not isinstance(payload, pb.Alert):
        return []
    position = envelope.global_position
    name = payload.name or envelope.stream.partition("-")[2]
    fired = envelope.event_type == "AlertFired"
    alert = blank_row(
        schema.alerts,
        name=name,
        state="firing" if fired else "resolved",
        severity=or_none(payload.severity),
        summary=or_none(payload.summary),
        labels_json=as_json(payload.labels) if payload.labels else None,
        value=payload.value,
        fired_position=position if fired else None,
        resolved_position=None if fired else position,
        updated_position=position,
    )
    event = {
        "position": position,
        "name": name,
        "event_type": envelope.event_type,
        "severity": payload.severity,
        "summary": payload.summary,
        "value": payload.value,
    }
    return [(UPSERT_ALERT, alert), (INSERT_ALERT_EVENT, event)]


EVENT_TYPES = frozenset({"AlertFired", "AlertResolved"})


def projection(options: Options) -> Projection:
    return Projection("alerts", 1, (schema.alerts, schema.alert_events), EVENT_TYPES, project)
