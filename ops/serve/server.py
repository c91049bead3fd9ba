"""The HTTP server of `esper serve`: the standard library's ThreadingHTTPServer, read-only.

`build_routes(ctx)` gathers the routes of the JSON API (ops.serve.api), of /metrics and /health
(ops.serve.observe) and, when it is installed, of the dashboard (ops.serve.dashboard). `Server` answers
GET and HEAD only; an unknown path is a JSON 404, any other method a JSON 405. With a token every request
but those of public routes (the dashboard's page shells and static files, no data) must carry
`Authorization: Bearer <token>`; the token never travels in a URL, so no log or history holds it.
`Follower` keeps the read models caught up with the log while the server runs and tells `ctx.updates`
how far they are.
"""

from __future__ import annotations

import hmac
import importlib
import importlib.util
import ipaddress
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from leyline import pb
from ops.serve import api, observe
from ops.serve.routes import Request, Response, Route, Router, ServeContext, error_response
from projections import catch_up, follow

DASHBOARD_MODULE = "ops.serve.dashboard"
LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback(address: str) -> bool:
    if address in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def build_routes(ctx: ServeContext) -> list[Route]:
    routes = [*api.routes(ctx), *observe.routes(ctx)]
    if importlib.util.find_spec(DASHBOARD_MODULE) is not None:
        routes.extend(importlib.import_module(DASHBOARD_MODULE).routes(ctx))
    return routes


class Follower:
    """Catches the read models up with the log once, then follows it in a thread until ctx.stopping."""

    def __init__(self, ctx: ServeContext) -> None:
        self.ctx = ctx
        self.thread = threading.Thread(target=self._run, name="esper-serve-follower", daemon=True)

    def catch_up(self) -> int:
        result = catch_up(self.ctx.store, self.ctx.engine)
        self.ctx.updates.advance(result.head)
        return result.head

    def start(self) -> None:
        self.thread.start()

    def _applied(self, events: list[pb.EventEnvelope]) -> None:
        self.ctx.updates.advance(events[-1].global_position)

    def _run(self) -> None:
        try:
            follow(self.ctx.store, self.ctx.engine, self.ctx.stopping, on_batch=self._applied)
        except Exception as exc:  # reported by /health; the API goes on serving what the models hold
            self.ctx.updates.failure = f"{type(exc).__name__}: {exc}"


class _Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    server_version = "esper-serve"
    disable_nagle_algorithm = True  # headers and body are separate writes: no delayed-ACK stall between them

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: requests are counted in esper_serve_requests_total instead of logged."""

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _refuse(self) -> None:
        self._send(error_response(405, "esper serve is read-only: only GET and HEAD"), "-", True)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

    def _authorized(self) -> bool:
        token = self.server.token
        if token is None:
            return True
        given = self.headers.get("Authorization", "")
        return given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), token.encode())

    def _answer(self, send_body: bool) -> None:
        started = time.perf_counter()
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        label = "-"
        found = self.server.router.match(path)
        public = found is not None and found[0].public
        if not public and not self._authorized():
            response = error_response(401, "a bearer token is required (Authorization: Bearer <token>)")
            response.headers["WWW-Authenticate"] = "Bearer"
        else:
            if found is None:
                response = error_response(404, f"no such path: {path}", path=path)
            else:
                route, params = found
                label = route.label
                request = Request(
                    path, params, urllib.parse.parse_qs(url.query), {k: v for k, v in self.headers.items()}
                )
                try:
                    response = route.handler(request)
                except Exception as exc:  # a handler's failure is the client's 500, never the server's end
                    response = error_response(500, f"{type(exc).__name__}: {exc}")
        observe.REQUEST_SECONDS.labels(label).observe(time.perf_counter() - started)
        self._send(response, label, send_body)

    def _send(self, response: Response, label: str, send_body: bool) -> None:
        observe.REQUESTS.labels(label, str(response.status)).inc()
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in response.headers.items():
            self.send_header(name, value)
        if isinstance(response.body, bytes):
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if send_body:
                self.wfile.write(response.body)
            return
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        if send_body:
            self._stream(response.body)

    def _stream(self, chunks: Iterator[bytes]) -> None:
        try:
            for chunk in chunks:
                if self.server.ctx.stopping.is_set():
                    break
                self.wfile.write(chunk)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, ctx: ServeContext, bind: str, port: int, token: str | None) -> None:
        if ":" in bind:
            self.address_family = socket.AF_INET6
        super().__init__((bind, port), _Handler)
        self.ctx = ctx
        self.token = token
        self.router = Router(build_routes(ctx))

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def stop(self) -> None:
        self.ctx.stopping.set()
        self.shutdown()
        self.server_close()


@contextmanager
def running(
    ctx: ServeContext, bind: str = "127.0.0.1", port: int = 0, token: str | None = None
) -> Iterator[Server]:
    """A server on a thread of this process (tests, benchmarks), the read models caught up and followed;
    stopped, with its follower, on exit. The context's store and engine stay open."""
    follower = Follower(ctx)
    follower.catch_up()
    server = Server(ctx, bind, port, token)
    follower.start()
    thread = threading.Thread(target=server.serve_forever, name="esper-serve", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join()
        follower.thread.join()
