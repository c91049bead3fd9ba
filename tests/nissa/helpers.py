"""Shared helpers of the Nissa tests: simulated logs in a data directory, a served context, HTTP calls."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eventstore import open_store
from leyline import pb
from leyline.datadir import DataDir
from ops.bench._workload import Simulator
from ops.serve.routes import ServeContext
from ops.serve.server import running
from projections import open_db, resolve_url
from tests.projections.helpers import unpositioned


def simulated_runs(data_dir: Path, runs: int = 3, epochs: int = 30, seed: int = 0) -> list[str]:
    """A data directory whose log holds the catalogue and `runs` simulated runs; returns their ids."""
    simulator = Simulator(seed)
    events: list[pb.EventEnvelope] = list(simulator.catalogue(5))
    run_ids = []
    for number in range(runs):
        run_events = list(simulator.run(epochs, run_id=f"sim{number}", rollback_every=15))
        run_ids.append(f"sim{number}")
        events.extend(run_events)
    store = open_store(DataDir.of(data_dir).log)
    try:
        for start in range(0, len(events), 500):
            store.append(unpositioned(events[start : start + 500]))
    finally:
        store.close()
    return run_ids


@contextmanager
def served(data_dir: Path, token: str | None = None, **options: Any) -> Iterator[tuple[str, ServeContext]]:
    """`esper serve` in this process on a free loopback port: yields its base URL and context."""
    store = open_store(DataDir.of(data_dir).log)
    url = resolve_url(data_dir)
    engine = open_db(url)
    ctx = ServeContext(Path(data_dir), url, store, engine, **options)
    try:
        with running(ctx, token=token) as server:
            yield f"http://127.0.0.1:{server.port}", ctx
    finally:
        store.close()
        engine.dispose()


def get(url: str, token: str | None = None, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def get_json(url: str, token: str | None = None) -> tuple[int, Any]:
    status, _, body = get(url, token)
    return status, json.loads(body)
