"""Prometheus metrics of Nissa (SPEC §11): alerts of record and their delivery."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

ALERT_EVENTS = Counter(
    "esper_nissa_alert_events_total", "AlertFired/AlertResolved events Nissa appended", ["rule", "event_type"]
)
FIRING = Gauge("esper_nissa_evaluator_alerts_firing", "Alerts of record firing in Nissa's evaluation")
EVALUATED_POSITION = Gauge("esper_nissa_evaluated_position", "Last log position Nissa has evaluated")
NOTIFICATIONS = Counter(
    "esper_nissa_notifications_total", "Alert notifications by channel and outcome", ["channel", "outcome"]
)
WEBHOOK_ATTEMPTS = Counter(
    "esper_nissa_webhook_attempts_total",
    "Webhook POST attempts by HTTP status ('error': no answer)",
    ["code"],
)
WEBHOOK_FAILURES = Counter(
    "esper_nissa_webhook_failures_total", "Alert notifications the webhook still refused after every retry"
)
INDEXED_EVENTS = Counter("esper_nissa_indexed_events_total", "Events indexed into Elasticsearch")
INDEXED_POSITION = Gauge("esper_nissa_indexed_position", "Last log position indexed into Elasticsearch")
