"""Prometheus metrics of Karn, the blueprint catalogue."""

from __future__ import annotations

from prometheus_client import Counter

REGISTERED = Counter("esper_karn_blueprints_registered_total", "BlueprintRegistered events appended")
REJECTED = Counter(
    "esper_karn_requests_rejected_total",
    "Blueprint requests refused (bad parameters, slot mismatch, quarantine, approval)",
    ["reason"],
)
