"""The dashboard in a real browser while a real run trains in a subprocess: the curves grow, a marker
appears at the graft and links to the seed's causal chain, the seed's timeline row changes colour, an
operator's rollback and the run's end show without a reload, and zoom and scroll survive every update."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page

from domains.tolaria.aggregate import GUARD
from tests.dashboard.conftest import screenshot
from tests.nissa.helpers import served

ROOT = Path(__file__).resolve().parents[2]
RUN_ID = "live1"
EPOCHS = 80  # long enough that the rollback, asked for after the first graft, finds the run live
ROLLBACK_TO = 10
WAIT_S = 120.0  # deadline of each condition below; a run of 80 epochs takes ~25 s here


def esper(data_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "ops.cli", *args, "--data-dir", str(data_dir)]


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def shown_epoch(page: Page) -> int:
    """The run's last epoch as the run page shows it ("N / EPOCHS"; "-" before the first)."""
    text = page.inner_text("#run-epoch").split("/")[0].strip()
    return int(text) if text.isdigit() else 0


def wait_until(condition: Callable[[], bool], what: str, deadline_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def training(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """A data dir holding a finished no-growth run of the task (the baseline) and a live grown run."""
    data_dir = tmp_path / "data"
    subprocess.run(
        esper(data_dir, "run", "--epochs", "12", "--run-id", "base", "--controller", "noop"),
        check=True,
        env=environment(),
        capture_output=True,
    )
    process = subprocess.Popen(
        esper(data_dir, "run", "--epochs", str(EPOCHS), "--run-id", RUN_ID),
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield data_dir, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def points(page: Page, series: str) -> int:
    value = page.get_attribute(f'svg[data-chart="loss"] path[data-series="{series}"]', "data-points")
    return int(value or 0)


@pytest.mark.slow
def test_live_run_in_the_browser(
    training: tuple[Path, subprocess.Popen[bytes]], page: Page, artifacts: Path
) -> None:
    data_dir, process = training
    with served(data_dir) as (url, _):
        page.goto(f"{url}/")
        page.wait_for_selector(f'tr[data-run="{RUN_ID}"]', timeout=WAIT_S * 1000)  # appears live
        page.wait_for_selector(f'tr[data-run="{RUN_ID}"] [data-status="running"]')
        screenshot(page, artifacts, "runs-live")

        page.set_viewport_size({"width": 1280, "height": 420})  # short, so the page scrolls
        page.click(f'a.run-link:text-is("{RUN_ID}")')
        page.wait_for_selector('svg[data-chart="loss"] path[data-series="val loss"]')
        first = points(page, "val loss")
        assert page.locator('path[data-series="no-growth base val"]').count() == 2  # the noop run's curves
        wait_until(lambda: points(page, "val loss") > first, "the curves to grow")

        # zoom into the accuracy chart and scroll down: neither may be lost on later updates
        box = page.locator('svg[data-chart="accuracy"]').bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + 80, box["y"] + 120)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + 120, steps=5)
        page.mouse.up()
        assert page.get_attribute("#accuracy-chart", "data-zoomed") == "true"
        page.evaluate("window.scrollTo(0, 200)")
        scrolled = page.evaluate("window.scrollY")
        assert scrolled > 0

        page.wait_for_selector('a.marker[data-kind="graft"]', state="attached", timeout=WAIT_S * 1000)
        graft = page.locator('svg[data-chart="loss"] a.marker[data-kind="graft"]').first
        slot = graft.get_attribute("href").rsplit(".", 1)[1]  # type: ignore[union-attr]
        row = f'.timeline-row[data-slot="{slot}"]'
        first_stage = page.get_attribute(row, "data-stage")
        first_fill = page.locator(f"{row} rect.segment").last.get_attribute("fill")
        wait_until(
            lambda: page.get_attribute(row, "data-stage") != first_stage,
            f"slot {slot} to leave {first_stage}",
        )
        assert page.locator(f"{row} rect.segment").last.get_attribute("fill") != first_fill
        assert page.get_attribute("#accuracy-chart", "data-zoomed") == "true"
        assert page.evaluate("window.scrollY") == scrolled
        page.set_viewport_size({"width": 1280, "height": 800})
        page.locator(f"{row} rect.segment").first.hover()
        assert "G0" in page.inner_text("#tooltip")
        screenshot(page, artifacts, "run-after-graft")
        page.mouse.move(0, 0)

        # the first graft can come before epoch ROLLBACK_TO (Tamiyo grows while the host still learns)
        wait_until(lambda: shown_epoch(page) > ROLLBACK_TO, f"the run to pass epoch {ROLLBACK_TO}")
        rollback = subprocess.run(
            esper(data_dir, "rollback", "--run", RUN_ID, "--to-epoch", str(ROLLBACK_TO), "--wait", "60"),
            env=environment(),
            capture_output=True,
            text=True,
        )
        assert rollback.returncode == 0, rollback.stderr
        page.wait_for_selector('a.marker[data-kind="rollback"]', state="attached", timeout=10_000)
        page.wait_for_selector('path[data-series="rolled back"]', state="attached", timeout=10_000)
        assert int(page.inner_text("#run-rollbacks")) >= 1
        assert page.locator(f'tr.rollback-row[data-epoch="{ROLLBACK_TO}"]').count() == 1
        screenshot(page, artifacts, "run-after-rollback")

        page.wait_for_selector('.run-header [data-status="completed"]', timeout=WAIT_S * 1000)
        assert process.wait(timeout=WAIT_S) == 0, process.stderr.read() if process.stderr else ""
        page.wait_for_function(
            f"document.getElementById('run-epoch').textContent.startsWith('{EPOCHS} ')", timeout=10_000
        )
        screenshot(page, artifacts, "run-completed")

        summary = json.loads(
            subprocess.run(
                esper(data_dir, "audit", "run", RUN_ID, "--json"),
                env=environment(),
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        # the operator's rollback, once; the guard's and the controller's are counted apart (a run may have
        # its own), and the page's count is the run's
        requests = [r for r in summary["rollbacks"] if r["event_type"] == "RollbackRequested"]
        completed = [r for r in summary["rollbacks"] if r["event_type"] == "RollbackCompleted"]
        operators = [r for r in requests if r["requested_by"] not in (GUARD, "tamiyo")]
        assert [r["target_epoch"] for r in operators] == [ROLLBACK_TO]
        assert summary["run"]["rollbacks"] == len(completed)
        assert page.inner_text("#run-rollbacks") == str(len(completed))

        page.dblclick('svg[data-chart="accuracy"]')
        page.locator('svg[data-chart="loss"] a.marker[data-kind="graft"]').first.click()
        page.wait_for_selector("ol.chain .step-decision")
        assert page.locator("ol.chain .step-command").count() >= 1
        screenshot(page, artifacts, "seed-chain")

        for name, path in [
            ("decisions", f"/runs/{RUN_ID}/decisions"),
            ("field-reports", f"/runs/{RUN_ID}/field-reports"),
            ("alerts", "/alerts"),
            ("runs", "/"),
        ]:
            page.goto(f"{url}{path}")
            page.wait_for_function("document.body.dataset.position !== undefined")
            screenshot(page, artifacts, name)
        assert page.locator(f'tr[data-run="{RUN_ID}"] [data-status="completed"]').count() == 1
