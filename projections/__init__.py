"""Projection runner, read models, rebuilds and audit queries (SPEC §6).

from projections import catch_up, open_db, resolve_url
engine = open_db(resolve_url(data_dir))          # upgrades the schema on open
result = catch_up(store, engine)                 # result.positions: checkpoint per projection
"""

from projections.db import DatabaseError, open_db, resolve_url, upgrade
from projections.errors import ProjectionError, ProjectionStopped, Stop
from projections.projectors import PROJECTION_NAMES, Projection, build_projections
from projections.rebuilds import rebuild
from projections.runner import (
    CatchUp,
    apply_batch,
    catch_up,
    default_projections,
    follow,
    stale,
    status,
)

__all__ = [
    "PROJECTION_NAMES",
    "CatchUp",
    "DatabaseError",
    "Projection",
    "ProjectionError",
    "ProjectionStopped",
    "Stop",
    "apply_batch",
    "build_projections",
    "catch_up",
    "default_projections",
    "follow",
    "open_db",
    "rebuild",
    "resolve_url",
    "stale",
    "status",
    "upgrade",
]
