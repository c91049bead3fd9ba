"""Esper's Prometheus rules (esper.rules.yml, unit-tested by esper.rules.test.yml) and `evaluate`, which
checks a rule against metrics sampled from this process with Prometheus' own engine (promtool)."""

from pathlib import Path

RULES = Path(__file__).resolve().parent / "esper.rules.yml"
RULE_TESTS = Path(__file__).resolve().parent / "esper.rules.test.yml"
