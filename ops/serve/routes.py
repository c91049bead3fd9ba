"""What `esper serve` is made of: routes, requests, responses and the context every handler reads.

A module that serves pages or data exports `routes(ctx) -> list[Route]`; the server (ops.serve.server)
matches the request path against each route's pattern in order. A pattern is a path whose `{name}` parts
match one path segment each and arrive in `Request.params`. A handler returns a `Response` whose body is
bytes, or an iterator of byte chunks that the server writes and flushes one by one until it ends, the
client goes away or the server stops (server-sent events). Handlers only read: the server answers GET and
HEAD, nothing else.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from eventstore import EventStore

JSON_TYPE = "application/json"


class Updates:
    """The position the read models have reached; handlers wait on it for news (live pages)."""

    def __init__(self, position: int = 0) -> None:
        self._position = position
        self._changed = threading.Condition()
        self.failure: str | None = None  # why the read models stopped following the log, if they did

    @property
    def position(self) -> int:
        return self._position

    def advance(self, position: int) -> None:
        with self._changed:
            if position > self._position:
                self._position = position
                self._changed.notify_all()

    def wait_beyond(self, position: int, timeout: float) -> int:
        """Block until the read models pass `position` or `timeout` seconds pass; the position then."""
        with self._changed:
            self._changed.wait_for(lambda: self._position > position, timeout)
            return self._position


@dataclass
class ServeContext:
    """What every handler may read: where the data is, the open log and the projection database."""

    data_dir: Path
    db_url: str
    store: EventStore
    engine: Engine
    updates: Updates = field(default_factory=Updates)
    stopping: threading.Event = field(default_factory=threading.Event)
    redis_url: str | None = None
    es_url: str | None = None


@dataclass(frozen=True)
class Request:
    path: str
    params: Mapping[str, str]
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The first value of a query parameter."""
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    status: int = 200
    body: bytes | Iterator[bytes] = b""
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    pattern: str
    handler: Handler
    name: str = ""  # the label of the server's request metrics (default: the pattern)
    # served without the bearer token: the dashboard's page shells and static files, which hold no data
    # (a page asks for the token, then reads the API with it)
    public: bool = False

    def compile(self) -> re.Pattern[str]:
        parts = re.split(r"\{(\w+)\}", self.pattern)
        regex = "".join(
            f"(?P<{part}>[^/]+)" if index % 2 else re.escape(part) for index, part in enumerate(parts)
        )
        return re.compile(f"^{regex}$")

    @property
    def label(self) -> str:
        return self.name or self.pattern


def json_response(document: Any, status: int = 200) -> Response:
    body = json.dumps(document, default=str, separators=(",", ":")).encode()
    return Response(status, body)


def error_response(status: int, message: str, **detail: Any) -> Response:
    return json_response({"error": message, "status": status, **detail}, status)


class Router:
    """Routes in the order given; the first whose pattern matches the path answers."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = [(route, route.compile()) for route in routes]

    def match(self, path: str) -> tuple[Route, dict[str, str]] | None:
        for route, pattern in self.routes:
            found = pattern.match(path)
            if found:
                return route, found.groupdict()
        return None
