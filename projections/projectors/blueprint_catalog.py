"""The blueprint catalogue read model: blueprints, compile jobs and their events, artifacts."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.message import Message

from leyline import pb
from projections import schema
from projections.projectors.base import (
    SLOT_KINDS,
    TIERS,
    Change,
    Options,
    Params,
    Projection,
    Statement,
    as_json,
    blank_row,
    insert_statement,
    keep_old,
    or_none,
    upsert_statement,
)

BLUEPRINT_COLUMNS = (
    "blueprint_id",
    "name",
    "tier",
    "risk",
    "curriculum_stage",
    "slot_kinds",
    "parameter_ranges_json",
    "requires_approval",
    "approved",
    "quarantine_only",
    "conservative_pool",
    "description",
    "registered_position",
    "updated_position",
)
# A re-registration (changed metadata) keeps an approval recorded by BlueprintApproved.
UPSERT_BLUEPRINT = upsert_statement(
    schema.blueprints,
    "upsert_blueprint",
    ("blueprint_id",),
    BLUEPRINT_COLUMNS,
    ", ".join(
        "approved = (excluded.approved OR COALESCE({blueprints}.approved, FALSE))"
        if column == "approved"
        else f"{column} = excluded.{column}"
        for column in BLUEPRINT_COLUMNS[1:]
    ),
)
BLUEPRINT_APPROVED = Statement(
    "blueprint_approved",
    "INSERT INTO {blueprints} (blueprint_id, approved, updated_position) "
    "VALUES (:blueprint_id, TRUE, :position) "
    "ON CONFLICT (blueprint_id) DO UPDATE SET approved = TRUE, updated_position = :position",
    ("blueprints",),
)
BLUEPRINT_STATUS = Statement(
    "blueprint_status",
    "INSERT INTO {blueprints} (blueprint_id, compile_status, last_job_id, artifact_hash, updated_position) "
    "VALUES (:blueprint_id, :status, :job_id, :artifact_hash, :position) "
    "ON CONFLICT (blueprint_id) DO UPDATE SET "
    "compile_status = COALESCE(:status, {blueprints}.compile_status), "
    "last_job_id = COALESCE(:job_id, {blueprints}.last_job_id), "
    "artifact_hash = COALESCE(:artifact_hash, {blueprints}.artifact_hash), updated_position = :position",
    ("blueprints",),
)
# Started/Failed/Succeeded name only the job: the blueprint is the job's.
BLUEPRINT_STATUS_BY_JOB = Statement(
    "blueprint_status_by_job",
    "UPDATE {blueprints} SET compile_status = :status, last_job_id = :job_id, "
    "artifact_hash = COALESCE(:artifact_hash, artifact_hash), updated_position = :position "
    "WHERE blueprint_id = (SELECT j.blueprint_id FROM {compile_jobs} j WHERE j.job_id = :job_id)",
    ("blueprints", "compile_jobs"),
)
JOB_COLUMNS = tuple(schema.compile_jobs.columns.keys())
UPSERT_JOB = upsert_statement(
    schema.compile_jobs,
    "upsert_compile_job",
    ("job_id",),
    JOB_COLUMNS,
    keep_old("compile_jobs", JOB_COLUMNS[1:]),
)
INSERT_COMPILE_EVENT = insert_statement(schema.compile_events)
ARTIFACT_COLUMNS = tuple(schema.artifacts.columns.keys())
UPSERT_ARTIFACT = upsert_statement(
    schema.artifacts,
    "upsert_artifact",
    ("artifact_hash",),
    ARTIFACT_COLUMNS,
    keep_old("artifacts", ARTIFACT_COLUMNS[1:]),
)


def _job(job_id: str, position: int, status: str, **values: Any) -> Params:
    return blank_row(schema.compile_jobs, job_id=job_id, status=status, updated_position=position, **values)


def project(envelope: pb.EventEnvelope, payload: Message) -> list[Change]:
    position = envelope.global_position
    if isinstance(payload, pb.BlueprintRegistered):
        d = payload.descriptor
        ranges = {
            name: {"min": r.min, "max": r.max, "default": r.default, "integer": r.integer}
            for name, r in sorted(d.parameter_ranges.items())
        }
        row = {
            "blueprint_id": d.blueprint_id,
            "name": d.name,
            "tier": TIERS.get(d.tier),
            "risk": d.risk,
            "curriculum_stage": d.curriculum_stage,
            "slot_kinds": ",".join(SLOT_KINDS.get(kind, str(kind)) for kind in d.slot_kinds),
            "parameter_ranges_json": json.dumps(ranges),
            "requires_approval": d.requires_approval,
            "approved": d.approved,
            "quarantine_only": d.quarantine_only,
            "conservative_pool": d.conservative_pool,
            "description": d.description,
            "registered_position": position,
            "updated_position": position,
        }
        return [(UPSERT_BLUEPRINT, row)]
    if isinstance(payload, pb.BlueprintApproved):
        return [(BLUEPRINT_APPROVED, {"blueprint_id": payload.blueprint_id, "position": position})]
    if isinstance(payload, pb.CompileJobQueued):
        job = _job(
            payload.job_id,
            position,
            "queued",
            blueprint_id=payload.blueprint_id,
            strategy=payload.strategy,
            attempts=0,
            max_attempts=payload.max_attempts,
            parameters_json=as_json(payload.parameters),
            slot_shape=",".join(str(n) for n in payload.slot_shape),
            queued_position=position,
        )
        status = {
            "blueprint_id": payload.blueprint_id,
            "status": "queued",
            "job_id": payload.job_id,
            "artifact_hash": None,
            "position": position,
        }
        event = blank_row(
            schema.compile_events, position=position, job_id=payload.job_id, event_type=envelope.event_type
        )
        return [(UPSERT_JOB, job), (INSERT_COMPILE_EVENT, event), (BLUEPRINT_STATUS, status)]
    if isinstance(payload, pb.CompileJobStarted | pb.CompileJobFailed | pb.CompileJobSucceeded):
        event = blank_row(
            schema.compile_events,
            position=position,
            job_id=payload.job_id,
            event_type=envelope.event_type,
            attempt=payload.attempt,
        )
        artifact_hash = None
        if isinstance(payload, pb.CompileJobStarted):
            job = _job(payload.job_id, position, "running", attempts=payload.attempt)
        elif isinstance(payload, pb.CompileJobFailed):
            job = _job(
                payload.job_id,
                position,
                "retrying" if payload.will_retry else "failed",
                attempts=payload.attempt,
                last_error=payload.error,
            )
            event.update(error=payload.error, will_retry=payload.will_retry)
        else:
            artifact_hash = or_none(payload.artifact_hash)
            job = _job(
                payload.job_id,
                position,
                "succeeded",
                attempts=payload.attempt,
                artifact_hash=artifact_hash,
                duration_ms=payload.duration_ms,
            )
            event.update(artifact_hash=artifact_hash)
        status = {
            "status": job["status"],
            "job_id": payload.job_id,
            "artifact_hash": artifact_hash,
            "position": position,
        }
        return [(UPSERT_JOB, job), (INSERT_COMPILE_EVENT, event), (BLUEPRINT_STATUS_BY_JOB, status)]
    if isinstance(payload, pb.ArtifactStored):
        artifact = blank_row(
            schema.artifacts,
            artifact_hash=payload.artifact_hash,
            blueprint_id=or_none(payload.blueprint_id),
            size_bytes=payload.size_bytes,
            strategy=or_none(payload.strategy),
            slot_shape=",".join(str(n) for n in payload.slot_shape) or None,
            job_id=or_none(payload.job_id),
            status="stored",
            stored_position=position,
            updated_position=position,
        )
        changes: list[Change] = [(UPSERT_ARTIFACT, artifact)]
        if payload.blueprint_id:
            status = {
                "blueprint_id": payload.blueprint_id,
                "status": None,
                "job_id": None,
                "artifact_hash": payload.artifact_hash,
                "position": position,
            }
            changes.append((BLUEPRINT_STATUS, status))
        return changes
    if isinstance(payload, pb.ArtifactCorrupted):
        error = payload.error or f"content hash is {payload.actual_hash}"
        artifact = blank_row(
            schema.artifacts,
            artifact_hash=payload.artifact_hash,
            blueprint_id=or_none(payload.blueprint_id),
            status="corrupted",
            error=error,
            updated_position=position,
        )
        changes = [(UPSERT_ARTIFACT, artifact)]
        if payload.blueprint_id:
            status = {
                "blueprint_id": payload.blueprint_id,
                "status": "corrupted",
                "job_id": None,
                "artifact_hash": None,
                "position": position,
            }
            changes.append((BLUEPRINT_STATUS, status))
        return changes
    return []


EVENT_TYPES = frozenset(
    {
        "BlueprintRegistered",
        "BlueprintApproved",
        "CompileJobQueued",
        "CompileJobStarted",
        "CompileJobFailed",
        "CompileJobSucceeded",
        "ArtifactStored",
        "ArtifactCorrupted",
    }
)


def projection(options: Options) -> Projection:
    tables = (schema.blueprints, schema.compile_jobs, schema.compile_events, schema.artifacts)
    return Projection("blueprint_catalog", 2, tables, EVENT_TYPES, project)
