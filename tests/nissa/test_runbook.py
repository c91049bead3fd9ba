"""ops/RUNBOOK.md names only commands that exist, and explains every alert rule."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ops.cli import command_names, main

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = (ROOT / "ops" / "RUNBOOK.md").read_text()


def _named_commands() -> list[list[str]]:
    """Each `esper` command line in the runbook, as [command] or [command, action] when it has actions."""
    found = []
    for line in RUNBOOK.splitlines():
        for match in re.finditer(r"\besper ([a-z]+)(?: ([a-z]+))?", line):
            command, action = match.groups()
            words = [command] if command != "blueprints" or action is None else [command, action]
            if words not in found:
                found.append(words)
    return found


def test_the_runbook_names_commands() -> None:
    names = {words[0] for words in _named_commands()}
    assert {"serve", "verify", "recover", "rollback", "audit", "index", "mirror", "run", "replay"} <= names
    assert names <= set(command_names()), names - set(command_names())


@pytest.mark.parametrize("words", _named_commands(), ids=" ".join)
def test_each_named_command_answers_help(words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*words, "--help"])
    assert exit_info.value.code == 0
    assert f"esper {' '.join(words)}" in capsys.readouterr().out


def test_every_alert_rule_has_a_section() -> None:
    rules = yaml.safe_load((ROOT / "ops" / "prometheus" / "esper.rules.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule}
    headings = " ".join(re.findall(r"^### (.+)$", RUNBOOK, flags=re.MULTILINE))
    assert {alert for alert in alerts if alert not in headings} == set()
