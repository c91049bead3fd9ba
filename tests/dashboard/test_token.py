"""The dashboard behind a bearer token (`esper serve` off loopback): the pages and static files are public
and hold no data, the API is not; a page takes the token from a #token= fragment or its sign-in form, keeps
it in this tab's sessionStorage and sends it as a header on every request, the live feed included. The
token never appears in a URL the browser requests."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, Request

from eventstore import open_store
from leyline.datadir import DataDir
from tests.dashboard.conftest import screenshot
from tests.dashboard.helpers import append, continuing, dashboard_runs, epochs_of
from tests.nissa.helpers import get, served

TOKEN = "t0k3n-for/the+dashboard"  # characters a fragment must carry encoded
WAIT_MS = 10_000


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("dashboard-token")
    dashboard_runs(directory, epochs=6)
    return directory


def requested_urls(page: Page) -> list[str]:
    urls: list[str] = []

    def record(request: Request) -> None:
        urls.append(request.url)

    page.on("request", record)
    return urls


def test_pages_are_public_and_the_api_is_not(runs: Path) -> None:
    with served(runs, token=TOKEN) as (url, _):
        for path in ("/", "/runs/grown", "/alerts", "/static/app.js", "/static/dashboard.css"):
            assert get(f"{url}{path}")[0] == 200, path
        for path in ("/api/runs", "/api/live", "/api/alerts", "/metrics", "/health", "/nowhere"):
            assert get(f"{url}{path}")[0] == 401, path
        assert get(f"{url}/api/runs", token=TOKEN)[0] == 200


def test_the_token_from_the_fragment_reads_the_api_and_follows_the_log(
    runs: Path, page: Page, artifacts: Path
) -> None:
    urls = requested_urls(page)
    with served(runs, token=TOKEN) as (url, _):
        page.goto(f"{url}/#token={TOKEN.replace('/', '%2F').replace('+', '%2B')}")
        page.wait_for_selector('tr[data-run="grown"]', timeout=WAIT_MS)
        assert page.is_hidden("#login") and page.is_hidden("#error")
        assert "token" not in page.url  # taken out of the address bar and the history
        assert page.evaluate("sessionStorage.getItem('esper-serve-token')") == TOKEN
        page.wait_for_selector('#live[data-state="live"]', timeout=WAIT_MS)

        page.click('a.run-link:text-is("grown")')  # another page of the tab: the token goes along
        page.wait_for_selector('svg[data-chart="loss"]', timeout=WAIT_MS)
        store = open_store(DataDir(runs).log)
        try:
            boundaries = epochs_of(continuing(store, seed=21), "tokenlive", 4)
            page.goto(f"{url}/runs/tokenlive")
            append(store, next(boundaries))
            loss = 'svg[data-chart="loss"] path[data-series="val loss"]'
            page.wait_for_selector(f'{loss}[data-points="1"]', state="attached", timeout=WAIT_MS)
            append(store, next(boundaries))  # shown through the live feed, read with the header
            page.wait_for_selector(f'{loss}[data-points="2"]', state="attached", timeout=WAIT_MS)
        finally:
            store.close()
        screenshot(page, artifacts, "token-run-live")
    assert urls and not [u for u in urls if "t0k3n" in u.split("#", 1)[0]]


def test_the_sign_in_form_asks_again_after_a_wrong_token(runs: Path, page: Page, artifacts: Path) -> None:
    urls = requested_urls(page)
    with served(runs, token=TOKEN) as (url, _):
        page.goto(f"{url}/alerts")
        page.wait_for_selector("#login:not([hidden])", timeout=WAIT_MS)
        assert page.get_attribute("#live", "data-state") == "locked"
        screenshot(page, artifacts, "token-sign-in")
        page.fill("#token", "wrong")
        page.click("#login button")
        page.wait_for_function(
            "document.querySelector('#error').textContent.includes('refused')", timeout=WAIT_MS
        )
        assert page.is_visible("#login")
        page.fill("#token", TOKEN)
        page.click("#login button")
        page.wait_for_selector('tr[data-state="firing"]', timeout=WAIT_MS)
        page.wait_for_selector('#live[data-state="live"]', timeout=WAIT_MS)
        assert page.is_hidden("#login") and page.is_hidden("#error")
    assert not [u for u in urls if "t0k3n" in u or "wrong" in u]
