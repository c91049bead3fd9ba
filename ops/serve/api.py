"""The JSON API of `esper serve` (README, "Serving"): runs, epochs, seeds, decisions, field reports,
alerts and a seed's causal chain, read from the projection database."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ops.serve import queries
from ops.serve.routes import Request, Response, Route, ServeContext, error_response, json_response
from projections.audit import NotFound


def _answer(read: Callable[[], Any]) -> Response:
    try:
        return json_response(read())
    except NotFound as exc:
        return error_response(404, str(exc))


def routes(ctx: ServeContext) -> list[Route]:
    engine = ctx.engine

    def run_list(request: Request) -> Response:
        return _answer(lambda: {"runs": queries.runs(engine), "position": ctx.updates.position})

    def run(request: Request) -> Response:
        return _answer(lambda: queries.run(engine, request.params["run_id"]))

    def seeds(request: Request) -> Response:
        return _answer(lambda: {"seeds": queries.seeds(engine, request.params["run_id"])})

    def decisions(request: Request) -> Response:
        return _answer(lambda: {"decisions": queries.decisions(engine, request.params["run_id"])})

    def field_reports(request: Request) -> Response:
        return _answer(lambda: {"field_reports": queries.field_reports(engine, request.params["run_id"])})

    def alerts(request: Request) -> Response:
        return _answer(lambda: queries.alerts(engine))

    def chain(request: Request) -> Response:
        return _answer(lambda: queries.chain(engine, request.params["seed"]))

    return [
        Route("/api/runs", run_list),
        Route("/api/runs/{run_id}", run),
        Route("/api/runs/{run_id}/seeds", seeds),
        Route("/api/runs/{run_id}/decisions", decisions),
        Route("/api/runs/{run_id}/field-reports", field_reports),
        Route("/api/alerts", alerts),
        Route("/api/seeds/{seed}/chain", chain),
    ]
