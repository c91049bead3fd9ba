"""Prometheus metrics of Tamiyo (SPEC §11: controller latency, plus decisions, risk and field reports)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DECISION_LATENCY = Histogram(
    "esper_tamiyo_decision_latency_seconds",
    "Wall time of one controller decision, timeout fallbacks included",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.012, 0.025, 0.05, 0.1, 0.5, 2.0, 5.0),
)
DECISIONS = Counter("esper_tamiyo_decisions_total", "Decisions by action", ["action"])
DECISION_FAILURES = Counter(
    "esper_tamiyo_decision_failures_total",
    "Decisions replaced by a safe no-op because the policy timed out or raised",
    ["cause"],
)
RISK_LEVEL = Gauge(
    "esper_tamiyo_risk_level", "Effective risk level (0 green … 4 critical) of the last decision"
)
CONSERVATIVE_MODE = Gauge("esper_tamiyo_conservative_mode", "1 while Tamiyo is in conservative mode")
CONSERVATIVE_CHANGES = Counter(
    "esper_tamiyo_conservative_mode_changes_total", "Conservative mode entered or left", ["active"]
)
COMMANDS = Counter("esper_tamiyo_commands_total", "Signed commands issued, by action", ["action"])
FIELD_REPORTS = Counter("esper_tamiyo_field_reports_total", "Field reports issued, by outcome", ["outcome"])
POLICY_CHANGES = Counter(
    "esper_tamiyo_policy_changes_total",
    "Learned-policy versions activated, refused at verification, or rolled back",
    ["outcome"],
)
