"""`/metrics` and `/health` of `esper serve`.

/metrics is the process's default registry (the server's request metrics, the projections' own metrics
as its follower applies events) followed by gauges derived from the read models at scrape time:
esper_nissa_runs{status}, esper_nissa_seeds{stage}, esper_nissa_alerts_firing,
esper_nissa_projection_lag_positions{projection} and esper_nissa_mirror_lag_positions{cursor}.
/health answers 200 when every checked component answers, else 503 naming those that do not.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from sqlalchemy import text

from eventstore.mirror import MirrorCursor
from eventstore.postgres import PostgresStore
from leyline.datadir import DataDir
from ops.serve import queries
from ops.serve.routes import Request, Response, Route, ServeContext, json_response
from projections import PROJECTION_NAMES

REQUESTS = Counter("esper_serve_requests_total", "HTTP requests answered by esper serve", ["route", "code"])
REQUEST_SECONDS = Histogram(
    "esper_serve_request_seconds",
    "Time to answer a request (to the first byte of a streamed body)",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
HEALTH_TIMEOUT_S = 2.0


def mirror_cursors(data_dir: Path) -> dict[str, int]:
    """The position each of the Redis mirror's durable cursors has reached, by file name."""
    directory = DataDir.of(data_dir).mirror
    return {path.stem: MirrorCursor.load(path).position for path in sorted(directory.glob("cursor-*.json"))}


class ReadModelCollector(Collector):
    """Gauges computed from the projection database and the log's head at each scrape."""

    def __init__(self, ctx: ServeContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        counted = queries.counts(self.ctx.engine)
        head = self.ctx.store.head_position()
        runs = GaugeMetricFamily("esper_nissa_runs", "Runs in the read models by status", labels=["status"])
        for status, count in sorted(counted["runs"].items()):
            runs.add_metric([status], count)
        seeds = GaugeMetricFamily("esper_nissa_seeds", "Seeds in the read models by stage", labels=["stage"])
        for stage, count in sorted(counted["seeds"].items()):
            seeds.add_metric([stage], count)
        firing = GaugeMetricFamily("esper_nissa_alerts_firing", "Alerts of record now firing")
        firing.add_metric([], counted["alerts_firing"])
        lag = GaugeMetricFamily(
            "esper_nissa_projection_lag_positions",
            "Log positions between the head of the log and a read model's checkpoint",
            labels=["projection"],
        )
        for name in PROJECTION_NAMES:
            lag.add_metric([name], max(0, head - counted["checkpoints"].get(name, 0)))
        mirror = GaugeMetricFamily(
            "esper_nissa_mirror_lag_positions",
            "Log positions between the head of the log and a Redis mirror's durable cursor",
            labels=["cursor"],
        )
        for cursor, position in mirror_cursors(self.ctx.data_dir).items():
            mirror.add_metric([cursor], max(0, head - position))
        yield from (runs, seeds, firing, lag, mirror)


def _check_log(ctx: ServeContext) -> str:
    return f"head at position {ctx.store.head_position()}"


def _check_projections(ctx: ServeContext) -> str:
    if ctx.updates.failure is not None:
        raise RuntimeError(f"the read models stopped following the log: {ctx.updates.failure}")
    with ctx.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    return f"caught up to position {ctx.updates.position}"


def _check_redis(ctx: ServeContext) -> str:
    client = redis.Redis.from_url(str(ctx.redis_url), socket_timeout=HEALTH_TIMEOUT_S)
    try:
        client.ping()
    finally:
        client.close()
    return "answers PING"


def _check_elasticsearch(ctx: ServeContext) -> str:
    with urllib.request.urlopen(str(ctx.es_url), timeout=HEALTH_TIMEOUT_S) as response:
        return f"HTTP {response.status}"


def health_checks(ctx: ServeContext) -> dict[str, Callable[[ServeContext], str]]:
    """The components this server depends on: the log and the read models always, the rest if configured.
    A PostgreSQL log or projection database is checked as such and named `postgresql` too."""
    checks: dict[str, Callable[[ServeContext], str]] = {"log": _check_log, "projections": _check_projections}
    if ctx.engine.dialect.name == "postgresql":
        checks["postgresql"] = _check_projections
    elif isinstance(ctx.store, PostgresStore):
        checks["postgresql"] = _check_log
    if ctx.redis_url:
        checks["redis"] = _check_redis
    if ctx.es_url:
        checks["elasticsearch"] = _check_elasticsearch
    return checks


def health(ctx: ServeContext) -> dict[str, Any]:
    results: dict[str, dict[str, Any]] = {}
    for name, check in health_checks(ctx).items():
        try:
            results[name] = {"ok": True, "detail": check(ctx)}
        except Exception as exc:  # any failure of a dependency is what /health reports
            results[name] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    down = [name for name, result in results.items() if not result["ok"]]
    return {"status": "down" if down else "ok", "down": down, "checks": results}


def routes(ctx: ServeContext) -> list[Route]:
    own = CollectorRegistry()
    own.register(ReadModelCollector(ctx))

    def metrics(request: Request) -> Response:
        return Response(200, generate_latest(REGISTRY) + generate_latest(own), CONTENT_TYPE_LATEST)

    def healthz(request: Request) -> Response:
        report = health(ctx)
        return json_response(report, 503 if report["down"] else 200)

    return [Route("/metrics", metrics), Route("/health", healthz)]
