"""The seed lifecycle read model: each seed slot's current state and every event that moved it."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.message import Message

from leyline import category_of, pb
from projections import schema
from projections.projectors.base import (
    STAGES,
    Change,
    Options,
    Params,
    Projection,
    Statement,
    as_json,
    blank_row,
    epoch_of,
    insert_statement,
    or_none,
    run_of,
    supersede_params,
    supersede_statement,
)

INSERT_SEED_EVENT = insert_statement(schema.seed_events)
UPSERT_SEED = Statement(
    "upsert_seed",
    "INSERT INTO {seeds} (stream, run_id, slot, seed_id, stage, blueprint_id, artifact_hash, command_id, "
    "epoch, violations, last_position) VALUES (:stream, :run_id, :slot, :seed_id, "
    "COALESCE(:stage, 'DORMANT'), :blueprint_id, :artifact_hash, :command_id, :epoch, "
    "COALESCE(:violations, 0), :position) "
    "ON CONFLICT (stream) DO UPDATE SET seed_id = :seed_id, stage = COALESCE(:stage, {seeds}.stage), "
    "blueprint_id = COALESCE(:blueprint_id, {seeds}.blueprint_id), "
    "artifact_hash = COALESCE(:artifact_hash, {seeds}.artifact_hash), "
    "command_id = COALESCE(:command_id, {seeds}.command_id), epoch = COALESCE(:epoch, {seeds}.epoch), "
    "violations = COALESCE(:violations, {seeds}.violations), last_position = :position",
    ("seeds",),
)
SEED_SUPERSEDE = supersede_statement(schema.seed_events)
# After a rollback the run's seeds are recomputed from their surviving (not superseded) events with the
# same rules the incremental path follows: a seed with no surviving event did not exist as of then.
_LATEST = (
    "(SELECT e.{column} FROM {{seed_events}} e WHERE e.stream = {{seeds}}.stream "
    "AND e.superseded_at IS NULL AND e.event_type <> 'CommandRejected' AND e.{column} IS NOT NULL{extra} "
    "ORDER BY e.position DESC LIMIT 1)"
)
_SINCE_GERMINATED = (
    " AND e.position > COALESCE((SELECT MAX(g.position) FROM {{seed_events}} g "
    "WHERE g.stream = {{seeds}}.stream AND g.superseded_at IS NULL AND g.to_stage = 'GERMINATED'), 0)"
)
SEEDS_DROP_VANISHED = Statement(
    "seeds_drop_vanished",
    "DELETE FROM {seeds} WHERE run_id = :run_id AND NOT EXISTS (SELECT 1 FROM {seed_events} e "
    "WHERE e.stream = {seeds}.stream AND e.superseded_at IS NULL AND e.event_type <> 'CommandRejected')",
    ("seeds", "seed_events"),
)
SEEDS_RECOMPUTE = Statement(
    "seeds_recompute",
    "UPDATE {seeds} SET "
    + ", ".join(
        [
            f"stage = COALESCE({_LATEST.format(column='to_stage', extra='')}, 'DORMANT')",
            f"blueprint_id = {_LATEST.format(column='blueprint_id', extra='')}",
            f"artifact_hash = {_LATEST.format(column='artifact_hash', extra='')}",
            f"command_id = {_LATEST.format(column='command_id', extra='')}",
            f"epoch = {_LATEST.format(column='epoch', extra='')}",
            "violations = COALESCE("
            + _LATEST.format(column="violations", extra=_SINCE_GERMINATED.format())
            + ", 0)",
            "last_position = :position",
        ]
    )
    + " WHERE run_id = :run_id",
    ("seeds", "seed_events"),
)


def _seed_event(envelope: pb.EventEnvelope, run_id: str, slot: int, **values: Any) -> Params:
    return blank_row(
        schema.seed_events,
        position=envelope.global_position,
        stream=envelope.stream,
        run_id=run_id,
        slot=slot,
        event_type=envelope.event_type,
        event_id=envelope.event_id,
        correlation_id=or_none(envelope.correlation_id),
        causation_id=or_none(envelope.causation_id),
        **values,
    )


def _seed_upsert(envelope: pb.EventEnvelope, run_id: str, slot: int, **values: Any) -> Params:
    row: Params = {
        "stream": envelope.stream,
        "run_id": run_id,
        "slot": slot,
        "seed_id": None,
        "stage": None,
        "blueprint_id": None,
        "artifact_hash": None,
        "command_id": None,
        "epoch": None,
        "violations": None,
        "position": envelope.global_position,
    }
    row.update(values)
    return row


def project(envelope: pb.EventEnvelope, payload: Message) -> list[Change]:
    if isinstance(payload, pb.RollbackCompleted):
        params = supersede_params(envelope, payload)
        recompute = {"run_id": params["run_id"], "position": envelope.global_position}
        return [(SEED_SUPERSEDE, params), (SEEDS_DROP_VANISHED, recompute), (SEEDS_RECOMPUTE, recompute)]
    if category_of(envelope.stream) != "seed":
        return []
    run_id = run_of(envelope)
    if isinstance(payload, pb.SeedTransitioned):
        gates = [
            {
                "gate": g.gate,
                "passed": g.passed,
                "reason": g.reason,
                "measured": dict(sorted(g.measured.items())),
            }
            for g in payload.gates
        ]
        to_stage = STAGES.get(payload.to_stage)
        epoch = payload.epoch if payload.epoch or not envelope.HasField("epoch") else envelope.epoch
        command_id = or_none(payload.command_id)
        blueprint_id = or_none(payload.blueprint_id)
        event = _seed_event(
            envelope,
            run_id,
            payload.slot,
            seed_id=payload.seed_id,
            from_stage=STAGES.get(payload.from_stage),
            to_stage=to_stage,
            gates_json=json.dumps(gates),
            command_id=command_id,
            reason=payload.reason,
            epoch=epoch,
            blueprint_id=blueprint_id,
            violations=0 if to_stage == "GERMINATED" else None,
        )
        seed = _seed_upsert(
            envelope,
            run_id,
            payload.slot,
            seed_id=payload.seed_id,
            stage=to_stage,
            blueprint_id=blueprint_id,
            command_id=command_id,
            epoch=epoch,
            violations=0 if to_stage == "GERMINATED" else None,
        )
        return [(INSERT_SEED_EVENT, event), (UPSERT_SEED, seed)]
    detail: dict[str, Any]
    if isinstance(payload, pb.SeedGrafted):
        detail = {"parameters": payload.parameters, "latency_ms": payload.latency_ms}
        command_id = or_none(payload.command_id)
        blueprint_id = or_none(payload.blueprint_id)
        artifact_hash = or_none(payload.artifact_hash)
        event = _seed_event(
            envelope,
            run_id,
            payload.slot,
            seed_id=payload.seed_id,
            command_id=command_id,
            epoch=epoch_of(envelope),
            blueprint_id=blueprint_id,
            artifact_hash=artifact_hash,
            detail_json=as_json(detail),
        )
        seed = _seed_upsert(
            envelope,
            run_id,
            payload.slot,
            seed_id=payload.seed_id,
            blueprint_id=blueprint_id,
            artifact_hash=artifact_hash,
            command_id=command_id,
            epoch=epoch_of(envelope),
        )
        return [(INSERT_SEED_EVENT, event), (UPSERT_SEED, seed)]
    if isinstance(payload, pb.IsolationViolationDetected):
        detail = {"parameter": payload.parameter, "gradient_norm": payload.gradient_norm}
        event = _seed_event(
            envelope,
            run_id,
            payload.slot,
            seed_id=payload.seed_id,
            epoch=payload.epoch,
            violations=payload.violation_count,
            detail_json=as_json(detail),
        )
        seed = _seed_upsert(
            envelope,
            run_id,
            payload.slot,
            seed_id=payload.seed_id,
            epoch=payload.epoch,
            violations=payload.violation_count,
        )
        return [(INSERT_SEED_EVENT, event), (UPSERT_SEED, seed)]
    if isinstance(payload, pb.SeedGradientsMeasured):
        # A measurement, not a move: the seed's row is untouched, and the epoch stays in the detail so that
        # the seeds recomputed after a rollback (latest epoch of any event) match the incremental path.
        detail = {
            "epoch": payload.epoch,
            "stage": STAGES.get(payload.stage),
            "epochs_since_germination": payload.epochs_since_germination,
            "steps": payload.steps,
            "seed_gradient_norm": payload.seed_gradient_norm,
            "host_gradient_norm": payload.host_gradient_norm,
            "seed_parameters": payload.seed_parameters,
            "host_parameters": payload.host_parameters,
            "seed_norm_per_parameter": payload.seed_norm_per_parameter,
            "host_norm_per_parameter": payload.host_norm_per_parameter,
        }
        event = _seed_event(
            envelope, run_id, payload.slot, seed_id=payload.seed_id, detail_json=as_json(detail)
        )
        return [(INSERT_SEED_EVENT, event)]
    if isinstance(payload, pb.CommandRejected):
        detail = {"code": payload.code}
        event = _seed_event(
            envelope,
            run_id,
            payload.slot,
            from_stage=STAGES.get(payload.stage),
            command_id=or_none(payload.command_id),
            reason=payload.reason,
            epoch=epoch_of(envelope),
            detail_json=as_json(detail),
        )
        return [(INSERT_SEED_EVENT, event)]
    return []


EVENT_TYPES = frozenset(
    {
        "SeedTransitioned",
        "SeedGrafted",
        "IsolationViolationDetected",
        "SeedGradientsMeasured",
        "CommandRejected",
        "RollbackCompleted",
    }
)


def projection(options: Options) -> Projection:
    return Projection("seed_lifecycle", 2, (schema.seeds, schema.seed_events), EVENT_TYPES, project)
