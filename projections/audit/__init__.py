"""Audit queries: "what happened, and why" for a seed, run, command, blueprint or policy (SPEC §6).

Each query returns a JSON-ready dict. Without `as_of` it shows everything the read models hold, with rows
superseded by a rollback marked (`superseded_at`); with `as_of=P` it shows the state as the log stood at
position P: rows after P are hidden and rows superseded only after P are shown as standing. `epoch=N`
means the position of that run's (standing) EpochCompleted for epoch N. For blueprints and policies the
catalogue row itself is the current one; their histories, uses and counts follow `as_of`.

Each family of query lives in its own module (seeds, runs, commands, blueprints, policies); `AUDITS` maps
the `esper audit` subject to its query.
"""

from __future__ import annotations

from projections.audit.blueprints import audit_blueprint
from projections.audit.commands import audit_command
from projections.audit.common import AuditError, NotFound, epoch_position
from projections.audit.policies import audit_policy
from projections.audit.runs import audit_run
from projections.audit.seeds import audit_seed, seed_stream

AUDITS = {
    "seed": audit_seed,
    "run": audit_run,
    "command": audit_command,
    "blueprint": audit_blueprint,
    "policy": audit_policy,
}

__all__ = [
    "AUDITS",
    "AuditError",
    "NotFound",
    "audit_blueprint",
    "audit_command",
    "audit_policy",
    "audit_run",
    "audit_seed",
    "epoch_position",
    "seed_stream",
]
