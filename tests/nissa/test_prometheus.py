"""ops/prometheus: promtool checks and tests the rules; every rule has a firing and a non-firing case; the
rules use Nissa's thresholds and metric names the code exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

# imported for their side effect: registering the metrics the rules read
import domains.kasmina.metrics
import domains.oona.metrics
import domains.tezzeret.metrics
import domains.tolaria.metrics
import eventstore.mirror_metrics
from domains.nissa import rules

RULES_DIR = Path(__file__).resolve().parents[2] / "ops" / "prometheus"
RULES = RULES_DIR / "esper.rules.yml"
TESTS = RULES_DIR / "esper.rules.test.yml"
MODULES = (
    domains.kasmina.metrics,
    domains.oona.metrics,
    domains.tezzeret.metrics,
    domains.tolaria.metrics,
    eventstore.mirror_metrics,
)
PROMTOOL = shutil.which("promtool") or "promtool"  # Debian's prometheus package; .ci/run installs it


def _rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = subprocess.run(
        [PROMTOOL, "test", "rules", TESTS.name], capture_output=True, text=True, cwd=RULES_DIR
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_has_a_firing_and_a_non_firing_case() -> None:
    cases = yaml.safe_load(TESTS.read_text())["tests"]
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in cases:
        for test in case.get("alert_rule_test", []):
            (fired if test.get("exp_alerts") else quiet).add(test["alertname"])
        for test in case.get("promql_expr_test", []):
            values = [float(sample["value"]) for sample in test.get("exp_samples", [])]
            (fired if any(values) else quiet).add(test["expr"])
    names = {rule.get("alert") or rule["record"] for rule in _rules()}
    assert names - fired == set(), "rules without a firing case"
    assert names - quiet == set(), "rules without a non-firing case"


def test_rules_use_nissas_thresholds() -> None:
    expressions = {rule.get("alert") or rule["record"]: " ".join(rule["expr"].split()) for rule in _rules()}
    assert expressions[rules.TRAINING_LATENCY_HIGH].endswith(f"> {rules.DEFAULT_HOOK_BUDGET_MS / 1000:g}")
    assert f"histogram_quantile({rules.HOOK_QUANTILE:g}," in expressions[rules.TRAINING_LATENCY_HIGH]
    assert expressions[rules.OONA_QUEUE_DEPTH].endswith(f"> {rules.OONA_DEPTH_THRESHOLD}")
    retry = expressions[rules.TEZZERET_COMPILE_RETRY_HIGH]
    assert f"[{rules.RETRY_WINDOW_S // 60}m]) > {rules.RETRY_THRESHOLD} unless" in retry
    explosion = expressions[rules.TRAINING_LOSS_EXPLOSION]
    assert f'{{trigger="guard"}}[{rules.EXPLOSION_WINDOW_S // 60}m])) > 0' in explosion
    for name, expression in expressions.items():
        if name.endswith(("_burn_fast", "_burn_slow")):
            assert f"(1 - {rules.SLO:g})" in expression
        if name.startswith("esper:mirror_lag_breach"):
            assert f"> bool {rules.MIRROR_LAG_SLO_POSITIONS})" in expression


def test_rules_name_only_metrics_the_code_exports() -> None:
    exported: set[str] = set()
    for metric in REGISTRY.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}.get(metric.type, ())
        exported |= {metric.name, *(metric.name + suffix for suffix in suffixes)}
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    for rule in _rules():
        for name in re.findall(r"\b(esper_[a-z_]+)", rule["expr"]):
            assert name in exported or name in recorded, f"{name} in {rule.get('alert') or rule['record']}"
