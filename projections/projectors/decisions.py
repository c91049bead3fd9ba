"""The decisions read model: the controller's decisions and the commands they issued."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.message import Message

from leyline import pb
from projections import schema
from projections.projectors.base import (
    COMMAND_TYPES,
    MODES,
    OPERATIONS,
    RISK_LEVELS,
    Change,
    Options,
    Projection,
    as_json,
    epoch_of,
    insert_statement,
    or_none,
    packet_hex,
    run_of,
    supersede_params,
    supersede_statement,
    upsert_statement,
)

INSERT_DECISION = insert_statement(schema.decisions, positional=True)
COMMAND_COLUMNS = tuple(schema.commands.columns.keys())
UPSERT_COMMAND = upsert_statement(
    schema.commands,
    "upsert_command",
    ("command_id",),
    COMMAND_COLUMNS,
    ", ".join(f"{column} = excluded.{column}" for column in COMMAND_COLUMNS[1:]),
)
DECISION_SUPERSEDE = supersede_statement(schema.decisions)
COMMAND_SUPERSEDE = supersede_statement(schema.commands)


def _command_json(command: pb.AdaptationCommand) -> str:
    operation = command.WhichOneof("operation")
    detail: dict[str, Any] = {"annotations": dict(sorted(command.annotations.items()))}
    if operation == "seed_operation":
        seed = command.seed_operation
        detail["seed_operation"] = {
            "operation": OPERATIONS.get(seed.operation),
            "blueprint_id": seed.blueprint_id,
            "parameters": dict(sorted(seed.parameters.items())),
            "alpha_ramp_epochs": seed.alpha_ramp_epochs,
        }
    elif operation == "optimizer_adjustment":
        adjustment = command.optimizer_adjustment
        detail["optimizer_adjustment"] = {
            "param_group": adjustment.param_group,
            "learning_rate": adjustment.learning_rate,
            "weight_decay": adjustment.weight_decay,
            "momentum": adjustment.momentum,
        }
    elif operation == "circuit_breaker":
        breaker = command.circuit_breaker
        detail["circuit_breaker"] = {
            "breaker": breaker.breaker,
            "open": breaker.open,
            "reason": breaker.reason,
        }
    elif operation == "rollback":
        rollback = command.rollback
        detail["rollback"] = {
            "target_epoch": rollback.target_epoch,
            "mode": MODES.get(rollback.mode),
            "reason": rollback.reason,
        }
    return json.dumps(detail, sort_keys=True)


def project(envelope: pb.EventEnvelope, payload: Message) -> list[Change]:
    if isinstance(payload, pb.DecisionMade):
        decision = (
            envelope.global_position,
            envelope.event_id,
            run_of(envelope) or None,
            epoch_of(envelope),
            payload.policy_name,
            payload.policy_version,
            RISK_LEVELS.get(payload.risk_level),
            payload.latency_ms,
            or_none(payload.command_id),
            payload.action,
            payload.conservative,
            payload.reason,
            packet_hex(payload.packet_id),
            as_json(payload.inputs_summary),
            None,
        )
        return [(INSERT_DECISION, decision)]
    if isinstance(payload, pb.AdaptationCommandIssued):
        command = payload.command
        seed_operation = command.seed_operation if command.HasField("seed_operation") else None
        row = {
            "command_id": command.command_id,
            "position": envelope.global_position,
            "event_id": envelope.event_id,
            "run_id": run_of(envelope) or None,
            "epoch": epoch_of(envelope),
            "command_type": COMMAND_TYPES.get(command.command_type),
            "operation": OPERATIONS.get(seed_operation.operation) if seed_operation else None,
            "target_slot": command.target_slot,
            "target_seed_id": command.target_seed_id,
            "blueprint_id": or_none(seed_operation.blueprint_id) if seed_operation else None,
            "policy_version": command.policy_version,
            "issued_by": command.issued_by,
            "decision_event_id": or_none(payload.decision_event_id),
            "issued_at_ms": command.issued_at_ms,
            "command_json": _command_json(command),
            "superseded_at": None,
        }
        return [(UPSERT_COMMAND, row)]
    if isinstance(payload, pb.RollbackCompleted):
        params = supersede_params(envelope, payload)
        return [(DECISION_SUPERSEDE, params), (COMMAND_SUPERSEDE, params)]
    return []


EVENT_TYPES = frozenset({"DecisionMade", "AdaptationCommandIssued", "RollbackCompleted"})


def projection(options: Options) -> Projection:
    return Projection("decisions", 1, (schema.decisions, schema.commands), EVENT_TYPES, project)
