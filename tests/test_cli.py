from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ops.cli import build_parser, command_names, main


@pytest.mark.parametrize("name", command_names())
def test_every_command_module_registers_its_own_name(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser([name]).parse_args([name, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: esper {name}" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_output_into_a_closed_pipe_is_not_a_traceback(tmp_path: Path) -> None:
    script = "from ops.cli import main; raise SystemExit(main())"
    esper = subprocess.Popen(
        [sys.executable, "-c", script, "blueprints", "list", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert esper.stdout is not None and esper.stderr is not None
    esper.stdout.readline()
    esper.stdout.close()
    stderr = esper.stderr.read().decode()
    esper.wait(timeout=120)
    assert "Traceback" not in stderr
