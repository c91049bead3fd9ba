"""Private data: the data directory and everything under it are private whatever the umask, a key file
others may read is refused, and nothing planted beside a file being written is followed."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leyline import datadir
from leyline.datadir import DataDir, is_private, write_private
from leyline.errors import KeyConfigError
from leyline.signing import Keyring

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask for the test, restored afterwards (DataDir.create narrows it)."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def not_private(root: Path) -> list[str]:
    """Every path under root (root included) that grants the group or others anything."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            continue
        expected = datadir.PRIVATE_DIRECTORY_MODE if stat.S_ISDIR(mode) else datadir.PRIVATE_FILE_MODE
        if not is_private(mode) or mode & 0o777 & ~expected:
            found.append(f"{path.relative_to(root)}: {mode & 0o777:o}")
    return found


def test_create_makes_the_root_and_what_is_made_under_it_private(tmp_path: Path, open_umask: None) -> None:
    data_dir = DataDir(tmp_path / "deep" / "esper-data").create()
    assert data_dir.root.stat().st_mode & 0o777 == datadir.PRIVATE_DIRECTORY_MODE
    # a collaborator that picks no mode (the store, Urza, sqlite) still creates private files and dirs
    (data_dir.root / "sub").mkdir()
    (data_dir.root / "sub" / "file").write_text("x")
    with open(data_dir.root / "opened", "w", opener=lambda p, f: os.open(p, f, 0o666)) as handle:
        handle.write("y")
    assert not_private(data_dir.root) == []


def test_write_private_replaces_atomically_with_a_0600_file(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "control.json"
    path.write_text("old")
    os.chmod(path, 0o644)
    write_private(path, b"new")
    assert path.read_bytes() == b"new"
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["control.json"]  # no temporary left behind


def test_a_planted_symlink_at_the_temporary_name_is_never_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever name the temporary file gets, something planted there is not written through."""
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    path = tmp_path / "keys.json"
    names = iter(["planted", "planted", "fresh"])
    monkeypatch.setattr(datadir.secrets, "token_hex", lambda _n: next(names))
    (tmp_path / ".keys.json.planted.tmp").symlink_to(victim)
    (tmp_path / "keys.tmp").symlink_to(victim)  # the name the keyring used before
    keyring = Keyring.load_or_create(path)
    assert victim.read_text() == "untouched"
    assert Keyring.from_file(path).keys == keyring.keys
    assert path.stat().st_mode & 0o777 == 0o600


def test_planted_names_everywhere_fail_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    monkeypatch.setattr(datadir.secrets, "token_hex", lambda _n: "planted")
    (tmp_path / ".keys.json.planted.tmp").symlink_to(victim)
    with pytest.raises(FileExistsError, match="every name tried exists"):
        Keyring.generate().save(tmp_path / "keys.json")
    assert victim.read_text() == "untouched"


@given(mode=st.integers(min_value=0o400, max_value=0o777))
def test_a_key_file_is_refused_exactly_when_group_or_others_have_access(
    tmp_path_factory: Any, mode: int
) -> None:
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    Keyring.generate().save(path)
    os.chmod(path, mode)
    if mode & 0o077:
        with pytest.raises(KeyConfigError, match=f"accessible by group or others \\(mode {mode:o}\\)"):
            Keyring.from_file(path)
        with pytest.raises(KeyConfigError, match="chmod 600"):
            Keyring.from_env({"ESPER_SIGNING_KEY_FILE": str(path)})
    else:
        assert Keyring.from_file(path).current == "k1"


def test_load_or_create_keeps_the_keys_already_there(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    first = Keyring.load_or_create(path)
    assert Keyring.load_or_create(path).keys == first.keys


def test_load_or_create_loses_a_race_to_the_first_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process creates the file between our check and our link: we read its keys, not ours."""
    path = tmp_path / "keys.json"
    theirs = Keyring.generate("theirs")
    real_link = os.link

    def link_after_the_other_process(source: Path, target: Path) -> None:
        theirs.save(path)
        real_link(source, target)

    monkeypatch.setattr(os, "link", link_after_the_other_process)
    assert Keyring.load_or_create(path).keys == theirs.keys
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json"]


def esper(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", *args, "--data-dir", str(data_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        umask=0,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.slow
def test_every_path_a_run_and_the_commands_create_is_private_under_umask_0(tmp_path: Path) -> None:
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"epochs": 3, "dataset": "synthetic-images", "batch_size": 32}))
    data_dir = tmp_path / "esper-data"
    run = esper(data_dir, "run", "--config", str(config), "--run-id", "private", "--json")
    assert run.returncode == 0, run.stderr
    for command in (["audit", "run", "private"], ["rebuild", "--all"], ["verify"]):
        done = esper(data_dir, *command)
        assert done.returncode == 0, done.stderr
    assert (data_dir / "keys.json").exists() and (data_dir / "checkpoints").is_dir()
    assert not_private(data_dir) == []


def test_esper_refuses_a_readable_key_file_in_one_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    Keyring.generate().save(keys)
    os.chmod(keys, 0o644)
    done = esper(tmp_path / "d", "run", "--epochs", "1", env={"ESPER_SIGNING_KEY_FILE": str(keys)})
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0
    assert "accessible by group or others (mode 644)" in done.stderr and "Traceback" not in done.stderr
