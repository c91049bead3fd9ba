"""The policies read model: each policy version's status and the events that moved it."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.message import Message

from leyline import pb
from projections import schema
from projections.projectors.base import (
    Change,
    Options,
    Params,
    Projection,
    Statement,
    as_json,
    blank_row,
    epoch_of,
    insert_statement,
    keep_old,
    or_none,
    upsert_statement,
)

POLICY_COLUMNS = tuple(schema.policies.columns.keys())
UPSERT_POLICY = upsert_statement(
    schema.policies,
    "upsert_policy",
    ("version",),
    POLICY_COLUMNS,
    keep_old("policies", POLICY_COLUMNS[1:]),
    {"active": "FALSE"},
)
DEACTIVATE_POLICIES = Statement(
    "deactivate_policies",
    "UPDATE {policies} SET active = :false, status = :status, updated_position = :position "
    "WHERE active = :true AND version <> :version",
    ("policies",),
)
INSERT_POLICY_EVENT = insert_statement(schema.policy_events)


def _policy(version: str, position: int, status: str, **values: Any) -> Params:
    return blank_row(schema.policies, version=version, status=status, updated_position=position, **values)


def _update_fields(update: pb.PolicyUpdate) -> Params:
    return {
        "policy_name": or_none(update.policy_name),
        "content_hash": or_none(update.content_hash),
        "parent_version": or_none(update.parent_version),
        "artifact_path": or_none(update.artifact_path),
        "lora": update.lora,
        "training_metrics_json": as_json(update.training_metrics) if update.training_metrics else None,
    }


def project(envelope: pb.EventEnvelope, payload: Message) -> list[Change]:
    position = envelope.global_position
    changes: list[Change] = []
    detail: dict[str, Any]
    if isinstance(payload, pb.PolicyTrained):
        version = payload.update.version
        detail = {"steps": payload.steps, "experiences": payload.experiences, "lora": payload.update.lora}
        policy = _policy(
            version,
            position,
            "trained",
            steps=payload.steps,
            experiences=payload.experiences,
            **_update_fields(payload.update),
        )
        changes.append((UPSERT_POLICY, policy))
    elif isinstance(payload, pb.PolicyValidation):
        version = payload.version
        detail = {
            "passed": payload.passed,
            "checks": dict(sorted(payload.checks.items())),
            "reason": payload.reason,
        }
        policy = _policy(
            version,
            position,
            "validated" if envelope.event_type == "PolicyValidated" else "rejected",
            validation_passed=payload.passed,
            validation_checks_json=as_json(payload.checks),
            validation_reason=payload.reason,
        )
        changes.append((UPSERT_POLICY, policy))
    elif isinstance(payload, pb.PolicyPublished):
        version = payload.update.version
        detail = {
            "content_hash": payload.update.content_hash,
            "parent_version": payload.update.parent_version,
        }
        changes.append(
            (UPSERT_POLICY, _policy(version, position, "published", **_update_fields(payload.update)))
        )
    elif isinstance(payload, pb.PolicyActivation):
        version = payload.version
        detail = {"previous_version": payload.previous_version, "reason": payload.reason}
        retire = {"false": False, "true": True, "status": "retired", "position": position, "version": version}
        changes.append((DEACTIVATE_POLICIES, retire))
        if envelope.event_type == "PolicyRolledBack" and payload.previous_version:
            rolled_back = _policy(payload.previous_version, position, "rolled_back")
            changes.append((UPSERT_POLICY, rolled_back))
        policy = _policy(version, position, "active", active=True)
        changes.append((UPSERT_POLICY, policy))
    else:
        return []
    event = {
        "position": position,
        "version": version,
        "event_type": envelope.event_type,
        "detail_json": json.dumps(detail, sort_keys=True),
        "epoch": payload.epoch if isinstance(payload, pb.PolicyActivation) else epoch_of(envelope),
        "run_id": envelope.run_id or None,
    }
    changes.append((INSERT_POLICY_EVENT, event))
    return changes


EVENT_TYPES = frozenset(
    {
        "PolicyTrained",
        "PolicyValidated",
        "PolicyRejected",
        "PolicyPublished",
        "PolicyActivated",
        "PolicyRolledBack",
    }
)


def projection(options: Options) -> Projection:
    return Projection("policies", 1, (schema.policies, schema.policy_events), EVENT_TYPES, project)
