"""A run's curves as every picture of it draws them (dashboard, `--plot`, TensorBoard export): its
standing epochs, the markers of ops.serve.queries, and the no-growth baseline.

The baseline of a run is another run of the same task (host, dataset and their options) under the noop
controller, which never grows the host: the newest completed one, else the newest at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from ops.serve import queries
from projections import schema
from projections.audit import NotFound

PALETTE_FILE = Path(__file__).parent / "static" / "palette.json"
NO_GROWTH_CONTROLLER = "noop"
TASK_KEYS = ("host", "dataset", "host_options", "dataset_options")
CURVE_COLUMNS = ("training_loss", "validation_loss", "training_accuracy", "validation_accuracy")


@cache
def palette() -> dict[str, dict[str, str]]:
    """Colours of markers, stages and series, shared by the dashboard's pages and `--plot`."""
    loaded: dict[str, dict[str, str]] = json.loads(PALETTE_FILE.read_text(encoding="utf-8"))
    return loaded


def _task(config_json: str | None) -> tuple[str, ...] | None:
    config = json.loads(config_json or "null")
    if not isinstance(config, dict):
        return None
    return tuple(json.dumps(config.get(key), sort_keys=True) for key in TASK_KEYS)


def _controller(config_json: str | None) -> str | None:
    config = json.loads(config_json or "null")
    return config.get("controller") if isinstance(config, dict) else None


def baseline_run(engine: Engine, run_id: str) -> str | None:
    """The id of the run's no-growth baseline, or None when the log holds none."""
    r = schema.runs
    with engine.connect() as connection:
        row = connection.execute(select(r.c.config_json).where(r.c.run_id == run_id)).first()
        if row is None:
            raise NotFound(f"no run {run_id!r}")
        task = _task(row.config_json)
        if task is None or _controller(row.config_json) == NO_GROWTH_CONTROLLER:
            return None
        candidates = connection.execute(
            select(r.c.run_id, r.c.status, r.c.config_json)
            .where(r.c.run_id != run_id)
            .order_by(r.c.started_position.desc())
        ).all()
    matching = [
        candidate
        for candidate in candidates
        if _controller(candidate.config_json) == NO_GROWTH_CONTROLLER and _task(candidate.config_json) == task
    ]
    completed = [candidate for candidate in matching if candidate.status == "completed"]
    chosen = completed or matching
    return str(chosen[0].run_id) if chosen else None


def standing_epochs(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    """The run's standing epochs (not voided by a rollback) with their curve values, in epoch order."""
    e = schema.run_epochs
    columns = [e.c.epoch, *(e.c[name] for name in CURVE_COLUMNS)]
    with engine.connect() as connection:
        rows = connection.execute(
            select(*columns).where(e.c.run_id == run_id, e.c.superseded_at.is_(None)).order_by(e.c.epoch)
        )
        return [dict(row._mapping) for row in rows]


def baseline(engine: Engine, run_id: str) -> dict[str, Any]:
    """`{"run_id": baseline id or None, "epochs": its standing epochs}`."""
    found = baseline_run(engine, run_id)
    return {"run_id": found, "epochs": standing_epochs(engine, found) if found else []}


@dataclass
class RunCurves:
    """What a static picture of a run shows."""

    run: dict[str, Any]
    epochs: list[dict[str, Any]]  # standing
    voided: list[dict[str, Any]]  # superseded by a rollback
    markers: list[dict[str, Any]]  # standing
    baseline_id: str | None = None
    baseline: list[dict[str, Any]] = field(default_factory=list)


def run_curves(engine: Engine, run_id: str) -> RunCurves:
    detail = queries.run(engine, run_id)
    base = baseline(engine, run_id)
    return RunCurves(
        run=detail["run"],
        epochs=[epoch for epoch in detail["epochs"] if not epoch["superseded"]],
        voided=[epoch for epoch in detail["epochs"] if epoch["superseded"]],
        markers=[marker for marker in detail["markers"] if not marker["superseded"]],
        baseline_id=base["run_id"],
        baseline=base["epochs"],
    )
