"""Every dashboard page in a real browser on simulated runs, the live feed's protocol, static files and
the baseline; screenshots of every page are kept (see conftest)."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from eventstore import open_store
from leyline.datadir import DataDir
from ops.serve import dashboard
from tests.dashboard.conftest import screenshot
from tests.dashboard.helpers import append, continuing, dashboard_runs, epochs_of
from tests.nissa.helpers import get, get_json, served

LIVE_WAIT_MS = 10_000  # deadline for a page to show an append (the target is 1 s; this is a generous bound)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    directory = tmp_path_factory.mktemp("dashboard")
    return directory, dashboard_runs(directory)


def rendered(page: Page) -> None:
    page.wait_for_function("document.body.dataset.position !== undefined")
    assert page.is_hidden("#error"), page.inner_text("#error")


def test_every_page_renders(runs: tuple[Path, dict[str, str]], page: Page, artifacts: Path) -> None:
    directory, ids = runs
    grown = ids["grown"]
    with served(directory) as (url, _):
        page.goto(f"{url}/")
        rendered(page)
        assert page.locator("tr[data-run]").count() == 3
        screenshot(page, artifacts, "sim-runs")

        page.goto(f"{url}/runs/{grown}")
        rendered(page)
        kinds = {marker.get_attribute("data-kind") for marker in page.locator("a.marker").all()}
        assert {"graft", "cull", "fossilize", "rollback"} <= kinds
        assert page.locator(f'path[data-series="no-growth {ids["baseline"]} val"]').count() == 2
        assert page.locator('path[data-series="rolled back"]').count() == 2
        assert page.locator(".timeline-row").count() >= 1
        assert page.locator("tr.rollback-row").count() >= 1
        assert "loss spike" in page.locator("tr.rollback-row").first.inner_text(), "the request's reason"
        screenshot(page, artifacts, "sim-run")

        page.goto(f"{url}/runs/{grown}/decisions")
        rendered(page)
        first = page.locator("tbody tr").first.inner_text()
        assert "heuristic" in first and "ms" not in first  # policy and version in their column
        screenshot(page, artifacts, "sim-decisions")

        page.goto(f"{url}/runs/{grown}/field-reports")
        rendered(page)
        assert page.locator("span.outcome").count() >= 1
        screenshot(page, artifacts, "sim-field-reports")

        page.goto(f"{url}/alerts")
        rendered(page)
        assert page.locator('tr[data-state="firing"]').count() == 1
        assert page.locator('tr[data-state="resolved"]').count() == 1
        assert page.inner_text("#firing") == "1 firing"
        screenshot(page, artifacts, "sim-alerts")


def test_every_seed_marker_opens_the_seed_chain(runs: tuple[Path, dict[str, str]], page: Page) -> None:
    directory, ids = runs
    with served(directory) as (url, _):
        page.goto(f"{url}/runs/{ids['grown']}")
        rendered(page)
        markers = page.locator('svg[data-chart="loss"] a.marker').all()
        for marker in markers:
            href = marker.get_attribute("href") or ""
            expected = "#rollbacks" if marker.get_attribute("data-kind") == "rollback" else "/seeds/grown."
            assert href.startswith(expected), href
        seed_marker = page.locator('svg[data-chart="loss"] a.marker[data-kind="graft"]').first
        seed_marker.locator("path").click()  # the head of the marker
        page.wait_for_url("**/seeds/grown.*")
        rendered(page)
        assert page.locator("ol.chain .step-decision").count() >= 1
        assert page.locator("ol.chain .step-command").count() >= 1


def test_live_appends_reach_the_page_and_keep_the_zoom(
    runs: tuple[Path, dict[str, str]], page: Page, artifacts: Path
) -> None:
    directory, _ = runs
    with served(directory) as (url, _):
        store = open_store(DataDir(directory).log)
        try:
            boundaries = epochs_of(continuing(store, seed=11), "livesim", 12)
            for _ in range(3):
                append(store, next(boundaries))
            page.goto(f"{url}/runs/livesim")
            rendered(page)
            loss = 'svg[data-chart="loss"] path[data-series="val loss"]'
            page.wait_for_selector(f'{loss}[data-points="3"]', state="attached", timeout=LIVE_WAIT_MS)
            box = page.locator('svg[data-chart="loss"]').bounding_box()
            assert box is not None
            page.mouse.move(box["x"] + 60, box["y"] + 100)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] - 30, box["y"] + 100, steps=4)
            page.mouse.up()
            assert page.get_attribute("#loss-chart", "data-zoomed") == "true"
            for count in range(4, 10):
                append(store, next(boundaries))
                grown = f'{loss}[data-points="{count}"]'
                page.wait_for_selector(grown, state="attached", timeout=LIVE_WAIT_MS)
            assert page.get_attribute("#loss-chart", "data-zoomed") == "true"
            for batch in boundaries:
                append(store, batch)
            page.wait_for_selector('.run-header [data-status="completed"]', timeout=LIVE_WAIT_MS)
            screenshot(page, artifacts, "sim-live-completed")
        finally:
            store.close()


def _first_append(data_dir: Path) -> tuple[int, dict[str, Any], str]:
    """Follow /api/live, append one epoch boundary: the head, the first append message, /metrics then."""
    with served(data_dir) as (url, ctx):
        address = urllib.parse.urlsplit(url)
        connection = http.client.HTTPConnection(str(address.hostname), address.port, timeout=30)
        connection.request("GET", "/api/live")
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type") == "text/event-stream"
        assert response.readline() == b"event: hello\n"
        hello = json.loads(response.readline().removeprefix(b"data: "))
        assert hello["position"] == ctx.updates.position
        response.readline()
        store = open_store(DataDir(data_dir).log)
        try:
            append(store, next(epochs_of(continuing(store, seed=5), "fed", 2)))
            head = store.head_position()
        finally:
            store.close()
        lines = [response.readline() for _ in range(2)]
        metrics = get(f"{url}/metrics")[2].decode()
        connection.close()
    assert lines[0] == b"event: append\n"
    return head, json.loads(lines[1].removeprefix(b"data: ")), metrics


def test_live_feed_names_the_position_and_runs_of_each_append(tmp_path: Path) -> None:
    dashboard_runs(tmp_path, epochs=3)
    head, message, metrics = _first_append(tmp_path)
    assert message["position"] == head
    assert {"run_id": "fed", "type": "RunStarted", "epoch": 0} in message["events"]
    assert any(event["type"] == "EpochCompleted" and event["epoch"] == 1 for event in message["events"])
    clients = next(line for line in metrics.splitlines() if line.startswith("esper_serve_live_clients "))
    assert float(clients.split()[1]) >= 1
    assert "esper_serve_live_messages_total" in metrics


def test_a_large_advance_is_announced_without_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dashboard_runs(tmp_path, epochs=3)
    monkeypatch.setattr(dashboard, "SCAN_LIMIT", 1)
    head, message, _ = _first_append(tmp_path)
    assert message == {"position": head, "events": None}


def test_static_files_and_pages(runs: tuple[Path, dict[str, str]]) -> None:
    directory, _ = runs
    with served(directory) as (url, _):
        status, headers, body = get(f"{url}/static/app.js")
        assert status == 200 and headers["Content-Type"] == "text/javascript" and b"/api/live" in body
        for path in ("/static/nope.js", "/static/..%2Fdashboard.py", "/static/page.html"):
            assert get(f"{url}{path}")[0] == 404, path
        status, headers, body = get(f"{url}/runs/%3Cscript%3E")
        assert status == 200 and b'<script>"' not in body and b"&lt;script&gt;" in body


def test_baseline_is_a_no_growth_run_of_the_same_task(runs: tuple[Path, dict[str, str]]) -> None:
    directory, ids = runs
    with served(directory) as (url, _):
        _, grown = get_json(f"{url}/api/runs/{ids['grown']}/baseline")
        _, own = get_json(f"{url}/api/runs/{ids['baseline']}/baseline")
        status, _ = get_json(f"{url}/api/runs/nosuch/baseline")
    assert grown["run_id"] == ids["baseline"] and len(grown["epochs"]) == 30
    assert own == {"run_id": None, "epochs": []}
    assert status == 404
