"""The dashboard of `esper serve`: its pages, their static files and the live feed (/api/live).

Pages are one HTML shell (static/page.html) naming the page and its parameters; static/app.js renders
them from the JSON API (ops.serve.api) with hand-written SVG charts (static/charts.js, no library, no
CDN). /api/live is a server-sent event stream: one `append` message per advance of the read models,
naming the position reached and the runs and event types appended (or null after a very large advance),
so a page re-reads only what it shows and does so after the projections hold the new events.

Behind a bearer token (`esper serve` off loopback) the pages and static files are public (they hold no
data) and the API is not: a page takes the token once, from a `#token=...` fragment (which browsers never
send to the server) or its sign-in form, keeps it in sessionStorage (this tab only) and sends it as
`Authorization: Bearer` on every API request, /api/live included (read with fetch streaming, since
EventSource cannot set headers).
"""

from __future__ import annotations

import html
import json
import mimetypes
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from string import Template
from typing import Any

from prometheus_client import Counter, Gauge

from ops.serve.curves import baseline, palette
from ops.serve.routes import Request, Response, Route, ServeContext, error_response, json_response
from projections.audit import NotFound

STATIC_DIR = Path(__file__).parent / "static"
SHELL = "page.html"
KEEPALIVE_S = 15.0  # a comment line this often keeps proxies and the browser from closing an idle feed
SUMMARY_LIMIT = 200  # (run, type) pairs named in one message; a page reloads on any of its run's events
SCAN_LIMIT = 10_000  # a larger advance (an import, a catch-up) is announced without names: pages reload
BACKLOG = 256  # messages a slow client may fall behind before it skips to the newest

LIVE_CLIENTS = Gauge("esper_serve_live_clients", "Pages following /api/live now")
LIVE_MESSAGES = Counter("esper_serve_live_messages_total", "Append messages published on /api/live")

RUN_SECTIONS = """\
<section class="charts"><div class="chart-box" id="loss-chart"></div>\
<div class="chart-box" id="accuracy-chart"></div></section>
  <h2>seed timeline</h2>
  <section class="timeline-box"><div id="timeline"></div><div id="stage-legend"></div></section>
  <section id="rollbacks"></section>"""


def _static_files() -> dict[str, Path]:
    """The files the server may send: what static/ holds, by name (no subdirectories, nothing else)."""
    return {path.name: path for path in STATIC_DIR.iterdir() if path.is_file() and path.name != SHELL}


def page_html(page: str, title: str, run: str = "", seed: str = "") -> bytes:
    shell = Template((STATIC_DIR / SHELL).read_text(encoding="utf-8"))
    return shell.substitute(
        page=page,
        title=html.escape(title),
        run=html.escape(run, quote=True),
        seed=html.escape(seed, quote=True),
        sections=RUN_SECTIONS if page == "run" else "",
        palette=json.dumps(palette(), separators=(",", ":")),
    ).encode()


class LiveFeed:
    """One reader of the log for every /api/live client: when the read models advance, it reads the new
    events once and publishes a summary; each client waits for messages after the last it sent."""

    def __init__(self, ctx: ServeContext) -> None:
        self.ctx = ctx
        self.messages: deque[tuple[int, bytes]] = deque(maxlen=BACKLOG)
        self.sequence = 0
        self.position = ctx.updates.position
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="esper-live-feed", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.ctx.stopping.is_set():
            reached = self.ctx.updates.wait_beyond(self.position, timeout=1.0)
            if reached <= self.position:
                continue
            message = self._summary(self.position, reached)
            with self.changed:
                self.position = reached
                self.sequence += 1
                self.messages.append((self.sequence, message))
                self.changed.notify_all()
            LIVE_MESSAGES.inc()
        with self.changed:
            self.changed.notify_all()

    def _summary(self, after: int, reached: int) -> bytes:
        if reached - after > SCAN_LIMIT:
            return sse("append", {"position": reached, "events": None})
        seen: dict[tuple[str, str], int | None] = {}
        for event in self.ctx.store.read_all(from_position=after + 1, to_position=reached):
            key = (event.run_id, event.event_type)
            seen[key] = event.epoch if event.HasField("epoch") else seen.get(key)
            if len(seen) >= SUMMARY_LIMIT:
                break
        events = [{"run_id": run, "type": kind, "epoch": epoch} for (run, kind), epoch in seen.items()]
        return sse("append", {"position": reached, "events": events})

    def _after(self, sent: int) -> list[tuple[int, bytes]]:
        """The messages published after number `sent`, waiting up to KEEPALIVE_S for one."""
        with self.changed:
            self.changed.wait_for(
                lambda: self.sequence > sent or self.ctx.stopping.is_set(), timeout=KEEPALIVE_S
            )
            return [(number, message) for number, message in self.messages if number > sent]

    def stream(self) -> Iterator[bytes]:
        with self.changed:
            sent = self.sequence
            position = self.position
        LIVE_CLIENTS.inc()
        try:
            yield sse("hello", {"position": position})
            while not self.ctx.stopping.is_set():
                pending = self._after(sent)
                if not pending:
                    yield b": keep-alive\n\n"
                    continue
                sent = pending[-1][0]
                for _, message in pending:
                    yield message
        finally:
            LIVE_CLIENTS.dec()


def sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def routes(ctx: ServeContext) -> list[Route]:
    files = _static_files()
    feed: list[LiveFeed] = []  # started by the first client, so a server nobody watches reads nothing
    feed_lock = threading.Lock()

    def shell(page: str, title: str, **params: str) -> Response:
        return Response(200, page_html(page, title, **params), "text/html; charset=utf-8")

    def runs_page(request: Request) -> Response:
        return shell("runs", "runs")

    def run_page(request: Request) -> Response:
        run_id = request.params["run_id"]
        return shell("run", f"run {run_id}", run=run_id)

    def decisions_page(request: Request) -> Response:
        run_id = request.params["run_id"]
        return shell("decisions", f"decisions of {run_id}", run=run_id)

    def reports_page(request: Request) -> Response:
        run_id = request.params["run_id"]
        return shell("field-reports", f"field reports of {run_id}", run=run_id)

    def alerts_page(request: Request) -> Response:
        return shell("alerts", "alerts")

    def seed_page(request: Request) -> Response:
        seed = request.params["seed"]
        return shell("seed", f"seed {seed}", seed=seed)

    def static(request: Request) -> Response:
        path = files.get(request.params["name"])
        if path is None:
            return error_response(404, f"no static file {request.params['name']!r}")
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return Response(200, path.read_bytes(), content_type)

    def run_baseline(request: Request) -> Response:
        try:
            return json_response(baseline(ctx.engine, request.params["run_id"]))
        except NotFound as exc:
            return error_response(404, str(exc))

    def live(request: Request) -> Response:
        with feed_lock:
            if not feed:
                feed.append(LiveFeed(ctx))
        headers = {"X-Accel-Buffering": "no"}
        return Response(200, feed[0].stream(), "text/event-stream", headers)

    return [
        Route("/", runs_page, "page:runs", public=True),
        Route("/runs/{run_id}", run_page, "page:run", public=True),
        Route("/runs/{run_id}/decisions", decisions_page, "page:decisions", public=True),
        Route("/runs/{run_id}/field-reports", reports_page, "page:field-reports", public=True),
        Route("/alerts", alerts_page, "page:alerts", public=True),
        Route("/seeds/{seed}", seed_page, "page:seed", public=True),
        Route("/static/{name}", static, "static", public=True),
        Route("/api/runs/{run_id}/baseline", run_baseline),
        Route("/api/live", live),
    ]
