"""Prometheus metrics of Kasmina (SPEC §11): seeds by stage, transitions, isolation violations, grafts."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SEEDS = Gauge(
    "esper_kasmina_seeds", "Slots by lifecycle stage, summed over the managers in this process", ["stage"]
)
TRANSITIONS = Counter(
    "esper_kasmina_transitions_total", "Seed lifecycle transitions applied", ["from_stage", "to_stage"]
)
ISOLATION_VIOLATIONS = Counter(
    "esper_kasmina_isolation_violations_total", "Gradient isolation violations detected by the monitor"
)
COMMANDS_REJECTED = Counter(
    "esper_kasmina_commands_rejected_total", "Adaptation commands rejected, by reason code", ["code"]
)
COMMANDS_APPLIED = Counter("esper_kasmina_commands_applied_total", "Adaptation commands applied")
GRAFT_LATENCY = Histogram(
    "esper_kasmina_graft_latency_seconds",
    "Fetch, verification, probe and attachment of a seed module",
    buckets=(1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 0.5, 2.5),
)
