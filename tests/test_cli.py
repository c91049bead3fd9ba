from __future__ import annotations

import argparse
import errno
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from domains.tolaria import checkpoint
from domains.tolaria.rollback import RollbackResult
from domains.tolaria.trainer import Trainer
from eventstore import DiskFull
from eventstore.file import FileStore
from leyline import pb
from leyline.datadir import DataDir
from ops.cli import build_parser, command_names, command_summary, main
from ops.run_report import progress_bar
from tests.eventstore.test_disk_full import small_file_system_available
from tests.tolaria.helpers import SMALL, checkpoint_hashes, run_events
from tests.tolaria.test_cli_and_crash import esper, head

ROOT = Path(__file__).resolve().parents[1]


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


def esper_process(*args: str | bytes, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=300,
        env=env,
    )


def imports_of(*argv: str) -> set[str]:
    """The modules `esper argv` has imported when it exits (help exits through SystemExit)."""
    script = (
        "import sys\n"
        "from ops.cli import main\n"
        "try:\n"
        f"    main({list(argv)!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    return set(result.stderr.split())


@pytest.mark.parametrize("argv", [["--help"], [], ["verify", "--help"]])
def test_top_level_help_and_verify_help_do_not_import_torch(argv: list[str]) -> None:
    modules = imports_of(*argv)
    assert "ops.cli" in modules
    assert "torch" not in modules


@pytest.mark.parametrize("argv", [["--help"], ["db", "--help"], ["run", "--help"], ["bench", "--help"]])
def test_help_that_needs_no_database_imports_no_sqlalchemy(argv: list[str]) -> None:
    modules = imports_of(*argv)
    assert "ops.cli" in modules
    assert not {"torch", "sqlalchemy", "alembic"} & modules


def test_no_command_module_imports_torch_at_module_level() -> None:
    script = (
        "import importlib, sys\n"
        "from ops.cli import command_names\n"
        "for name in command_names():\n"
        "    importlib.import_module(f'ops.commands.{name}')\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.stdout.strip() == "False", result.stderr


@pytest.mark.parametrize("name", command_names())
def test_the_listing_shows_the_help_each_command_registers(name: str) -> None:
    summary = command_summary(name)
    assert summary
    registered = " ".join(build_parser([name]).format_help().split())
    assert f"{name} {' '.join(summary.split())}" in registered


def test_data_dir_that_is_a_regular_file_is_bad_usage(tmp_path: Path) -> None:
    regular = tmp_path / "a-file"
    regular.write_text("not a directory")
    for argv in (["run", "--epochs", "1"], ["verify"], ["blueprints", "list"], ["db", "status"]):
        result = esper_process(*argv, "--data-dir", str(regular))
        assert result.returncode == 2, result.stderr
        assert f"{regular} is not a directory" in result.stderr and "Traceback" not in result.stderr
    environment = {**os.environ, "ESPER_DATA_DIR": str(regular)}
    result = esper_process("verify", env=environment)
    assert result.returncode == 2 and "is not a directory" in result.stderr


def test_an_argument_that_is_not_utf8_is_bad_usage(capsys: pytest.CaptureFixture[str]) -> None:
    undecodable = b"\xff\xfe".decode(errors="surrogateescape")  # what Python makes of such argv bytes
    for argv in (
        ["audit", "run", undecodable],
        ["audit", "seed", f"{undecodable}.0"],
        ["run", "--run-id", undecodable],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is not UTF-8 text" in err


DISK_FULL_HINT = "; free space, then `esper run --resume`"


def small_run(tmp_path: Path, epochs: int = 3) -> list[str]:
    config = tmp_path / "run.json"
    config.write_text(json.dumps({**SMALL, "epochs": epochs}))
    return ["run", "--data-dir", str(tmp_path / "data"), "--config", str(config), "--json"]


def test_a_full_disk_during_a_checkpoint_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(*args: object) -> Path:  # what handle.write raises: no file name on the error
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint, "write_file", no_space)
    assert main(small_run(tmp_path)) == 1
    out, err = capsys.readouterr()
    assert not out
    assert err == f"esper run: disk full while writing under {tmp_path / 'data'}{DISK_FULL_HINT}\n"


def test_a_full_disk_during_an_append_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    append = FileStore.append
    calls = itertools.count()

    def filling(self: FileStore, events: Sequence[Any], *args: Any, **kwargs: Any) -> Any:
        if next(calls) >= 3:
            raise DiskFull(str(self.path / "segment.wal"))
        return append(self, events, *args, **kwargs)

    monkeypatch.setattr(FileStore, "append", filling)
    assert main(small_run(tmp_path)) == 1
    out, err = capsys.readouterr()
    assert not out
    segment = tmp_path / "data" / "log" / "segment.wal"
    assert err == f"esper run: disk full while writing {segment}{DISK_FULL_HINT}\n"


@pytest.mark.slow
@pytest.mark.skipif(not small_file_system_available(), reason="cannot mount a tmpfs (no user namespaces)")
def test_esper_run_on_a_real_full_disk_is_one_line(tmp_path: Path) -> None:
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    argv = " ".join(small_run(tmp_path, epochs=40)).replace(str(tmp_path / "data"), str(mountpoint / "data"))
    script = f"mount -t tmpfs -o size=160k tmpfs {mountpoint} && exec {sys.executable} -m ops.cli {argv}"
    result = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    line = result.stderr.splitlines()[-1]  # after the store's warning that its INDEX could not be saved
    assert line.startswith("esper run: disk full while writing ") and line.endswith(DISK_FULL_HINT)


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("url", ["http://localhost:6379", "redis://[::1:6379/0", "ftp://x"])
def test_run_with_a_redis_url_of_another_scheme_or_malformed_is_bad_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    assert main(["run", "--data-dir", str(tmp_path / "d"), "--redis", url]) == 2
    assert "--redis: not a Redis URL" in one_line(capsys)
    assert not (tmp_path / "d").exists()  # refused before anything is written


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_a_config_file_that_is_not_utf8_is_bad_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    config = tmp_path / f"run{suffix}"
    config.write_bytes(b'{"epochs": 1}\xff\xfe' if suffix == ".json" else b"epochs = 1\n\xff")
    assert main(["run", "--data-dir", str(tmp_path / "d"), "--config", str(config)]) == 2
    assert f"config file {config} is not UTF-8 text" in one_line(capsys)


def test_a_rollback_line_goes_to_stderr_so_json_stays_valid(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for as_json in (True, False):
        with progress_bar(argparse.Namespace(json=as_json)) as progress:
            progress.on_start(10, 0)
            progress.on_rollback(RollbackResult(2, pb.ROLLBACK_MODE_FULL, 12.0))
        out, err = capsys.readouterr()
        assert out == ""
        assert "rolled back to epoch 2 (full, 12 ms)" in err


def interrupted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: Path) -> None:
    """A run `rres` stopped by Ctrl-C after its first epoch: resumable."""
    run_epoch = Trainer.run_epoch

    def once(self: Trainer) -> None:
        run_epoch(self)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "run_epoch", once)
        argv = ["run", "--data-dir", str(tmp_path / "d"), "--config", str(config), "--run-id", "rres"]
        assert main(argv) == 130


def test_resume_accepts_the_recorded_values_and_names_the_one_that_differs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "run.json"
    config.write_text(json.dumps({**SMALL, "epochs": 3, "seed": 7}))
    interrupted_run(tmp_path, monkeypatch, config)
    capsys.readouterr()
    resume = ["run", "--data-dir", str(tmp_path / "d"), "--run-id", "rres", "--resume"]

    assert main([*resume, "--seed", "8"]) == 2
    assert "--seed 8 differs from run rres's recorded seed = 7" in one_line(capsys)
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps({**SMALL, "seed": 7, "learning_rate": 0.5}))
    assert main([*resume, "--config", str(changed)]) == 2
    assert f"learning_rate = 0.5 in {changed} differs from run rres's recorded learning_rate = 0.01" in (
        one_line(capsys)
    )
    assert main([*resume, "--controller", "tamiyo"]) == 2
    assert "--controller tamiyo differs from run rres's recorded controller = 'noop'" in one_line(capsys)

    # the recorded values, from the file and as options, are accepted
    assert main([*resume, "--config", str(config), "--seed", "7", "--controller", "noop", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["resumed"] and summary["epochs"] == 3


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["db", "status", "--db", "redis://[::1:6379/0"], 2, "--db: not a database URL"),
        (["db", "status", "--db", "http://127.0.0.1:1/x"], 2, "--db http:// is not supported"),
        (["rebuild", "--all", "--db", "mysql://127.0.0.1:1/x"], 2, "--db mysql:// is not supported"),
        (["audit", "run", "r1", "--db", "postgresql://127.0.0.1:1/x"], 1, "Connection refused"),
        (["mirror", "--redis", "redis://[::1:6379/0"], 2, "--redis: not a Redis URL (Invalid IPv6 URL)"),
        (["mirror", "--redis", "http://127.0.0.1:1"], 2, "--redis: not a Redis URL"),
    ],
)
def test_urls_of_another_scheme_or_malformed_are_bad_usage_and_failures_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, message: str
) -> None:
    data_dir = tmp_path / "d"
    FileStore(DataDir(data_dir).log).close()
    assert main([*argv, "--data-dir", str(data_dir)]) == code
    assert message in one_line(capsys)


def factory_without_parameters() -> None:
    """A `module:factory` whose signature neither a host nor a dataset factory has."""


def dataset_of_one_parameter(seed: int) -> None:
    """A dataset factory missing its options parameter."""


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--seed", str(2**64)], f"seed must be between 0 and 2**64 - 1 (torch's seed range), got {2**64}"),
        (["--seed", "-1"], "seed must be between 0 and 2**64 - 1"),
        (["--epochs", str(10**30)], f"epochs must be below 2**63, got {10**30}"),
        (["--host", f"{__name__}:factory_without_parameters"], "must take (spec); its signature is ()"),
        (
            ["--dataset", f"{__name__}:dataset_of_one_parameter"],
            "must take (seed, options); its signature is (seed: 'int')",
        ),
    ],
)
def test_out_of_range_numbers_and_factories_of_the_wrong_signature_are_bad_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    assert main([*small_run(tmp_path)[:-1], *options]) == 2
    assert message in one_line(capsys)


@pytest.mark.parametrize("value", ["-1", str(2**63), "ten"])
@pytest.mark.parametrize("option", ["--as-of", "--epoch"])
def test_audit_positions_and_epochs_out_of_range_are_bad_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", "run", "r1", option, value, "--data-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.slow
def test_a_live_rollback_leaves_run_json_one_json_object(tmp_path: Path) -> None:
    config = tmp_path / "run.json"
    config.write_text(json.dumps({**SMALL, "epochs": 400}))
    run = esper("run", "--data-dir", tmp_path, "--run-id", "rjson", "--config", config, "--json")
    deadline = time.monotonic() + 120
    while len(checkpoint_hashes(run_events(tmp_path, "rjson")) if head(tmp_path) else {}) < 4:
        assert run.poll() is None and time.monotonic() < deadline, "the run did not reach epoch 4"
        time.sleep(0.1)
    request = esper("rollback", "--data-dir", tmp_path, "--run", "rjson", "--to-epoch", "2", "--wait", "60")
    assert request.wait(timeout=120) == 0, request.communicate()[1]
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    summary = json.loads(out)  # the whole of stdout: the rollback's line went to stderr
    assert summary["run_id"] == "rjson" and summary["rollbacks"] == 1 and summary["epochs"] == 400
    assert "rolled back to epoch 2" in err
