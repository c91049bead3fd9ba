"""A full disk during an append: a typed error that says what to do, nothing acknowledged is lost, the
failed batch leaves nothing behind, and the store works again once there is space. The disk is real: a
64 KiB tmpfs mounted in a private mount namespace (unshare), so no root is needed where user namespaces are
allowed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def small_file_system_available() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /tmp"], capture_output=True
    )
    return probe.returncode == 0


@pytest.mark.skipif(not small_file_system_available(), reason="cannot mount a tmpfs (no user namespaces)")
def test_an_append_on_a_full_disk_says_so_and_loses_nothing(tmp_path: Path) -> None:
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    script = (
        f"mount -t tmpfs -o size=128k tmpfs {mountpoint} && "
        f"exec {sys.executable} -m tests.eventstore.disk_full_child {mountpoint}"
    )
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, cwd=ROOT, env=environment
    )
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout)
    error = report["error"]
    segment = str(mountpoint / "log" / f"{1:020d}.wal")
    assert error["type"] == "DiskFull" and error["path"] == segment
    assert error["message"] == f"disk full while writing {segment}; free space, then `esper run --resume`"
    assert report["temporaries"] == [], "a checkpoint that could not be written leaves no temporary file"
    assert report["head_after_reopen"] == report["acknowledged"] > 0
    assert report["head_after_freeing"] == report["acknowledged"] + 1
