"""The read models, one module per read model, and their registry (SPEC §6).

Every module has the same shape: `project(envelope, payload) -> list[Change]`, a pure function from one
event to the row changes it makes, its `EVENT_TYPES`, and `projection(options) -> Projection`, the read
model with its name, version and tables. `MODULES` lists them in the order the runner applies them; a new
read model is a new module added there.
"""

from __future__ import annotations

from projections.projectors import (
    alerts,
    blueprint_catalog,
    decisions,
    field_reports,
    policies,
    runs,
    seed_lifecycle,
)
from projections.projectors.base import (
    DEFAULT_FIELD_REPORT_RETENTION_S,
    STAGES,
    BatchFinisher,
    Change,
    Options,
    Params,
    Projection,
    Projector,
    Row,
    Statement,
)

MODULES = (runs, seed_lifecycle, decisions, field_reports, blueprint_catalog, policies, alerts)


def build_projections(field_report_retention_s: float = DEFAULT_FIELD_REPORT_RETENTION_S) -> list[Projection]:
    options = Options(field_report_retention_s)
    return [module.projection(options) for module in MODULES]


PROJECTION_NAMES = tuple(projection.name for projection in build_projections())

__all__ = [
    "DEFAULT_FIELD_REPORT_RETENTION_S",
    "MODULES",
    "PROJECTION_NAMES",
    "STAGES",
    "BatchFinisher",
    "Change",
    "Options",
    "Params",
    "Projection",
    "Projector",
    "Row",
    "Statement",
    "build_projections",
]
