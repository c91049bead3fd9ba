"""`esper export tensorboard` read back with TensorBoard's own event reader, and `--plot` of run and audit."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from eventstore import open_store
from leyline.datadir import DataDir
from projections import catch_up, open_db, resolve_url
from projections.audit import audit_run
from tests.dashboard.helpers import dashboard_runs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    directory = tmp_path_factory.mktemp("export")
    return directory, dashboard_runs(directory)


def esper(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )


def test_tensorboard_export_reads_back(runs: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    directory, ids = runs
    grown = ids["grown"]
    for _ in range(2):  # a second export replaces the first
        result = esper(directory, "export", "tensorboard", grown, "--logdir", str(tmp_path))
        assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / grown).glob("events.out.tfevents.*"))) == 1
    events = EventAccumulator(str(tmp_path / grown), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"loss/train", "loss/validation", "accuracy/validation", "parameters", "time/hook_ms"} <= scalars
    assert {"seeds/dormant", "seeds/training", "seeds/fossilized"} <= scalars

    engine = open_db(resolve_url(directory))
    try:
        standing = [epoch for epoch in audit_run(engine, grown)["epochs"] if not epoch["superseded"]]
    finally:
        engine.dispose()
    loss = events.Scalars("loss/validation")
    assert [point.step for point in loss] == [epoch["epoch"] for epoch in standing]
    assert [point.value for point in loss] == pytest.approx([epoch["validation_loss"] for epoch in standing])
    for point, epoch in zip(events.Scalars("seeds/dormant"), standing, strict=True):
        assert point.value == sum(seed["stage"] == "DORMANT" for seed in epoch["seeds"])

    texts = {tag.removesuffix("/text_summary") for tag in events.Tags()["tensors"]}
    assert {"events/graft", "events/cull", "events/fossilize", "events/rollback"} <= texts
    graft = events.Tensors("events/graft/text_summary")[0]
    assert graft.tensor_proto.string_val[0].decode().startswith("graft at slot")


def test_export_of_an_unknown_run_is_one_line(runs: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    directory, _ = runs
    result = esper(directory, "export", "tensorboard", "nosuch", "--logdir", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip() == "esper export: no run 'nosuch'"


def test_audit_plot_writes_png_and_svg(runs: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    directory, ids = runs
    png, svg = tmp_path / "grown.png", tmp_path / "out" / "grown.svg"
    for path in (png, svg):
        result = esper(directory, "audit", "run", ids["grown"], "--plot", str(path))
        assert result.returncode == 0, result.stderr
        assert f"plot of run {ids['grown']}: {path}" in result.stderr
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    text = "".join(ElementTree.parse(svg).getroot().itertext())
    for label in ("val loss", "graft", "cull", "fossilize", "rollback", "voided by rollback"):
        assert label in text, label
    assert f"no growth ({ids['baseline']})" in text


def test_plot_options_are_checked_before_anything_runs(runs: tuple[Path, dict[str, str]]) -> None:
    directory, ids = runs
    bad = esper(directory, "audit", "run", ids["grown"], "--plot", "curves.jpg")
    assert bad.returncode == 2 and "must end in .png or .svg" in bad.stderr
    seed = esper(directory, "audit", "seed", f"{ids['grown']}.0", "--plot", "curves.png")
    assert seed.returncode == 2 and "--plot draws a run" in seed.stderr
    run = esper(directory, "run", "--epochs", "1", "--plot", "curves.gif")
    assert run.returncode == 2 and "must end in .png or .svg" in run.stderr


@pytest.mark.slow
def test_run_plot_draws_the_finished_run(tmp_path: Path) -> None:
    path = tmp_path / "run.png"
    result = esper(tmp_path / "data", "run", "--epochs", "3", "--run-id", "plotted", "--plot", str(path))
    assert result.returncode == 0, result.stderr
    assert path.read_bytes().startswith(b"\x89PNG")
    store = open_store(DataDir(tmp_path / "data").log)
    engine = open_db(resolve_url(tmp_path / "data"))
    try:
        catch_up(store, engine)
        assert audit_run(engine, "plotted")["run"]["status"] == "completed"
    finally:
        store.close()
        engine.dispose()
