"""The runs read model: runs, their epochs, end-of-epoch hooks, checkpoints and rollbacks.

`run_rollbacks` also keeps each CommandRejected of a run that is not on a seed's stream (those are in
seed_events): a rollback request refused on the run's stream, a controller's rollback or a command naming
no slot of the host refused on the command's stream; its reason is "<code>: <reason>"."""

from __future__ import annotations

from google.protobuf.message import Message

from leyline import category_of, pb
from projections import schema
from projections.projectors.base import (
    MODES,
    Change,
    Options,
    Projection,
    Statement,
    blank_row,
    insert_statement,
    keep_old,
    packet_hex,
    run_of,
    supersede_params,
    supersede_statement,
    upsert_statement,
)

INSERT_EPOCH = insert_statement(schema.run_epochs, positional=True)
INSERT_HOOK = insert_statement(schema.run_hooks, positional=True)
INSERT_CHECKPOINT = insert_statement(schema.run_checkpoints, positional=True)
INSERT_ROLLBACK = insert_statement(schema.run_rollbacks)
RUN_STARTED_COLUMNS = (
    "run_id",
    "status",
    "config_json",
    "seed",
    "host_model",
    "dataset",
    "code_version",
    "device",
    "resumed",
    "started_position",
    "started_at_ns",
    "last_position",
    "rollbacks",
)
UPSERT_RUN_STARTED = upsert_statement(
    schema.runs,
    "run_started",
    ("run_id",),
    RUN_STARTED_COLUMNS,
    keep_old("runs", RUN_STARTED_COLUMNS[1:-1]),
)
RUN_PROGRESS_COLUMNS = ("run_id", "status", "last_epoch", "last_position", "rollbacks")
UPSERT_RUN_PROGRESS = upsert_statement(
    schema.runs,
    "run_progress",
    ("run_id",),
    RUN_PROGRESS_COLUMNS,
    "last_epoch = excluded.last_epoch, last_position = excluded.last_position",
    collapse="run_id",
)
RUN_ENDED_COLUMNS = (
    "run_id",
    "status",
    "last_position",
    "ended_position",
    "epochs",
    "test_accuracy",
    "parameters",
    "model_sha256",
    "error",
    "rollbacks",
)
UPSERT_RUN_ENDED = upsert_statement(
    schema.runs,
    "run_ended",
    ("run_id",),
    RUN_ENDED_COLUMNS,
    keep_old("runs", RUN_ENDED_COLUMNS[1:-1]),
)
RUN_ROLLED_BACK = Statement(
    "run_rolled_back",
    "UPDATE {runs} SET rollbacks = rollbacks + 1, last_position = :position, last_epoch = ("
    "SELECT MAX(epoch) FROM {run_epochs} WHERE run_id = :run_id AND superseded_at IS NULL) "
    "WHERE run_id = :run_id",
    ("runs", "run_epochs"),
)
RUN_SUPERSEDE = tuple(
    supersede_statement(table) for table in (schema.run_epochs, schema.run_hooks, schema.run_checkpoints)
)


def project(envelope: pb.EventEnvelope, payload: Message) -> list[Change]:
    position = envelope.global_position
    run_id = run_of(envelope)
    if isinstance(payload, pb.EpochCompleted):
        state = payload.state
        epoch = (
            position,
            run_id,
            state.epoch,
            packet_hex(state.packet_id),
            state.global_step,
            state.training_loss,
            state.training_accuracy,
            state.validation_loss,
            state.validation_accuracy,
            payload.test_accuracy,
            payload.epoch_wall_ms,
            payload.parameters,
            # deterministic: map entries in key order, the same bytes in every process
            state.SerializeToString(deterministic=True),
            envelope.occurred_at_ns,
            None,
        )
        progress = {
            "run_id": run_id,
            "status": "running",
            "last_epoch": state.epoch,
            "last_position": position,
            "rollbacks": 0,
        }
        return [(INSERT_EPOCH, epoch), (UPSERT_RUN_PROGRESS, progress)]
    if isinstance(payload, pb.EpochHookTimed):
        hook = (
            position,
            run_id,
            payload.epoch,
            payload.overrun or envelope.event_type == "EpochHookOverrun",
            payload.assembly_ms,
            payload.controller_ms,
            payload.command_ms,
            payload.guard_ms,
            payload.total_ms,
            payload.budget_ms,
            None,
        )
        return [(INSERT_HOOK, hook)]
    if isinstance(payload, pb.RunStarted):
        row = {
            "run_id": payload.run_id or run_id,
            "status": "running",
            "config_json": payload.config_json,
            "seed": payload.seed,
            "host_model": payload.host_model,
            "dataset": payload.dataset,
            "code_version": payload.code_version,
            "device": payload.device,
            "resumed": payload.resumed,
            "started_position": position,
            "started_at_ns": envelope.occurred_at_ns,
            "last_position": position,
            "rollbacks": 0,
        }
        return [(UPSERT_RUN_STARTED, row)]
    if isinstance(payload, pb.CheckpointCommitted):
        manifest = payload.manifest
        checkpoint = (
            position,
            manifest.run_id or run_id,
            manifest.epoch,
            manifest.content_hash,
            ",".join(manifest.components),
            manifest.log_position,
            manifest.size_bytes,
            manifest.path,
            None,
        )
        return [(INSERT_CHECKPOINT, checkpoint)]
    if isinstance(payload, pb.RollbackRequested):
        row = blank_row(
            schema.run_rollbacks,
            position=position,
            run_id=payload.run_id or run_id,
            event_type=envelope.event_type,
            target_epoch=payload.target_epoch,
            mode=MODES.get(payload.mode),
            reason=payload.reason,
            requested_by=payload.requested_by,
        )
        return [(INSERT_ROLLBACK, row)]
    if isinstance(payload, pb.CommandRejected):
        if not run_id or category_of(envelope.stream) == "seed":
            return []
        row = blank_row(
            schema.run_rollbacks,
            position=position,
            run_id=run_id,
            event_type=envelope.event_type,
            reason=f"{payload.code}: {payload.reason}",
        )
        return [(INSERT_ROLLBACK, row)]
    if isinstance(payload, pb.RollbackCompleted):
        supersede = supersede_params(envelope, payload)
        changes: list[Change] = [(statement, supersede) for statement in RUN_SUPERSEDE]
        row = blank_row(
            schema.run_rollbacks,
            position=position,
            run_id=supersede["run_id"],
            event_type=envelope.event_type,
            target_epoch=payload.target_epoch,
            target_position=payload.target_position,
            mode=MODES.get(payload.mode),
            checkpoint_hash=payload.checkpoint_hash,
            duration_ms=payload.duration_ms,
            superseded_from=payload.superseded_from,
            superseded_to=payload.superseded_to,
        )
        changes.append((INSERT_ROLLBACK, row))
        changes.append((RUN_ROLLED_BACK, {"run_id": supersede["run_id"], "position": position}))
        return changes
    if isinstance(payload, pb.RunCompleted):
        row = blank_row(
            schema.runs,
            run_id=payload.run_id or run_id,
            status="completed",
            last_position=position,
            ended_position=position,
            epochs=payload.epochs,
            test_accuracy=payload.test_accuracy,
            parameters=payload.parameters,
            model_sha256=payload.model_sha256,
            rollbacks=0,
        )
        return [(UPSERT_RUN_ENDED, {key: row[key] for key in RUN_ENDED_COLUMNS})]
    if isinstance(payload, pb.RunFailed):
        row = blank_row(
            schema.runs,
            run_id=payload.run_id or run_id,
            status="failed",
            last_position=position,
            ended_position=position,
            error=payload.error,
            rollbacks=0,
        )
        return [(UPSERT_RUN_ENDED, {key: row[key] for key in RUN_ENDED_COLUMNS})]
    return []


EVENT_TYPES = frozenset(
    {
        "RunStarted",
        "EpochCompleted",
        "EpochHookTimed",
        "EpochHookOverrun",
        "CheckpointCommitted",
        "RollbackRequested",
        "RollbackCompleted",
        "CommandRejected",
        "RunCompleted",
        "RunFailed",
    }
)


def projection(options: Options) -> Projection:
    return Projection(
        "runs",
        3,  # 2: run_epochs keeps the whole state packet (migration 0002); 3: refusals in run_rollbacks
        (schema.runs, schema.run_epochs, schema.run_hooks, schema.run_checkpoints, schema.run_rollbacks),
        EVENT_TYPES,
        project,
    )
