"""A rule of esper.rules.yml evaluated on this process's own metrics by promtool.

`Scraper` samples the series a rule reads from the prometheus-client registry, one sample per call, as a
Prometheus server scraping once a minute would (sample i is at minute i). `check_alert` writes them as the
input series of a promtool unit test that expects the alert firing at some minutes and not at others, and
runs `promtool test rules`: the expression is Prometheus' own, evaluated by its engine.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY, CollectorRegistry

from ops.prometheus import RULES

PROMTOOL = "promtool"
METRIC_NAME = re.compile(r"\b(esper_[a-z_]+)")
COUNTER_SUFFIXES = ("_total", "_count", "_bucket", "_sum")


def alert_rule(name: str) -> dict[str, Any]:
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == name:
                return dict(rule)
    raise KeyError(f"no alert rule {name!r} in {RULES}")


def _series(name: str, labels: dict[str, str]) -> str:
    if not labels:
        return name
    inner = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return f"{name}{{{inner}}}"


@dataclass
class Scraper:
    """Samples, at each call, every series of the metrics an alert rule's expression names."""

    alert: str
    registry: CollectorRegistry = REGISTRY
    scrapes: list[dict[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.metrics = set(METRIC_NAME.findall(alert_rule(self.alert)["expr"]))

    def _wanted(self, sample_name: str) -> bool:
        return any(sample_name == m or sample_name.startswith(f"{m}_") for m in self.metrics)

    def scrape(self) -> None:
        values = {}
        for metric in self.registry.collect():
            for sample in metric.samples:
                if self._wanted(sample.name) and not sample.name.endswith("_created"):
                    values[_series(sample.name, dict(sample.labels))] = float(sample.value)
        self.scrapes.append(values)

    def input_series(self) -> list[dict[str, str]]:
        """promtool's input series; a counter's labelled child, created at its first increment, was 0
        before it existed (prometheus-client creates children lazily), other gaps are missing samples."""
        names = sorted({series for scrape in self.scrapes for series in scrape})
        result = []
        for name in names:
            gap = "0" if name.split("{")[0].endswith(COUNTER_SUFFIXES) else "_"
            values = " ".join(repr(scrape[name]) if name in scrape else gap for scrape in self.scrapes)
            result.append({"series": name, "values": values})
        return result


@dataclass
class Verdict:
    passed: bool
    firing_at: list[int]
    quiet_at: list[int]
    output: str


def check_alert(scraper: Scraper, firing_at: list[int], quiet_at: list[int]) -> Verdict:
    """promtool's verdict on: the alert fires at each minute of `firing_at` and not at `quiet_at`."""
    promtool = shutil.which(PROMTOOL)
    if promtool is None:
        return Verdict(False, firing_at, quiet_at, "promtool is missing (Debian package prometheus)")
    rule = alert_rule(scraper.alert)
    expected = [{"exp_labels": rule.get("labels", {}), "exp_annotations": rule.get("annotations", {})}]
    cases = [{"eval_time": f"{m}m", "alertname": scraper.alert, "exp_alerts": expected} for m in firing_at]
    cases += [{"eval_time": f"{m}m", "alertname": scraper.alert, "exp_alerts": []} for m in quiet_at]
    document = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": scraper.input_series(), "alert_rule_test": cases}],
    }
    with tempfile.TemporaryDirectory(prefix="esper-promtool-") as directory:
        path = Path(directory) / "drill.test.yml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        result = subprocess.run(
            [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=120
        )
    return Verdict(result.returncode == 0, firing_at, quiet_at, (result.stdout + result.stderr).strip())
