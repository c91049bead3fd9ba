"""Projectors: pure functions from one event to the row changes it makes (SPEC §6).

A change is a `Statement` and its parameters. A statement's SQL names each table as a `str.format` field,
`{runs}`, `{seeds}`, …, filled in with the physical table name when it is rendered, so a blue/green rebuild
can aim the same statements at its new tables. The runner executes changes in log order per table, many
at a time (executemany), in the transaction that also moves the checkpoint.
The SQL is portable between SQLite (≥ 3.24) and PostgreSQL: `INSERT … ON CONFLICT … DO UPDATE`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from sqlalchemy import Table

from leyline import category_of, pb
from projections import schema

Params = dict[str, Any]
Row = tuple[Any, ...]  # the parameters of a positional statement


@dataclass(frozen=True, eq=False)
class Statement:
    """One parameterised SQL statement; `tables` are the logical tables it reads or writes.

    `collapse` names a key parameter when, among consecutive executions, only the last one per key
    matters (an upsert that overwrites what it sets): the runner then executes only that one.
    `positional` statements take a tuple of values in the order their `:name` parameters appear in the
    SQL (each used once) instead of a dict: the hot inserts, where binding by name costs more than the
    insert itself.
    """

    name: str
    sql: str
    tables: tuple[str, ...]
    collapse: str | None = None
    positional: bool = False

    def __post_init__(self) -> None:
        if self.positional and self.collapse is not None:
            raise ValueError(f"statement {self.name}: a positional statement cannot collapse by key")

    def render(self, names: Mapping[str, str]) -> str:
        return self.sql.format(**names)


Change = tuple[Statement, Params | Row]
Projector = Callable[[pb.EventEnvelope, Message], list[Change]]
BatchFinisher = Callable[[], list[Change]]


@dataclass(frozen=True)
class Projection:
    """A read model: its tables, the event types it consumes and its projector.

    Bump `version` whenever the projector's output for the same events changes: `esper rebuild` (with no
    names) rebuilds exactly the projections whose stored version differs from the code's.
    """

    name: str
    version: int
    tables: tuple[Table, ...]
    event_types: frozenset[str]
    project: Projector
    finish_batch: BatchFinisher | None = None

    @property
    def table_names(self) -> tuple[str, ...]:
        return tuple(table.name for table in self.tables)


def _stage_names(enum: Any, prefix: str) -> dict[int, str]:
    return {value.number: value.name.removeprefix(prefix) for value in enum.DESCRIPTOR.values}


STAGES = _stage_names(pb.SeedLifecycleStage, "SEED_STAGE_")
RISK_LEVELS = _stage_names(pb.RiskLevel, "RISK_LEVEL_")
TIERS = _stage_names(pb.BlueprintTier, "BLUEPRINT_TIER_")
OUTCOMES = _stage_names(pb.FieldReportOutcome, "FIELD_REPORT_OUTCOME_")
MODES = _stage_names(pb.RollbackMode, "ROLLBACK_MODE_")
COMMAND_TYPES = _stage_names(pb.CommandType, "COMMAND_TYPE_")
OPERATIONS = _stage_names(pb.SeedOperation, "SEED_OP_")
SLOT_KINDS = _stage_names(pb.SlotKind, "SLOT_KIND_")


def packet_hex(packet_id: int) -> str:
    return f"{packet_id:016x}"


_encode = json.JSONEncoder(separators=(",", ":")).encode


def _json(mapping: Mapping[str, Any]) -> str:
    return _encode(dict(sorted(mapping.items()))) if mapping else "{}"


def _or_none(value: str) -> str | None:
    return value or None


def _epoch(envelope: pb.EventEnvelope) -> int | None:
    return envelope.epoch if envelope.HasField("epoch") else None


def run_of(envelope: pb.EventEnvelope) -> str:
    """The run an event belongs to: the envelope's run_id, else the id of a run-/seed-/decision- stream."""
    if envelope.run_id:
        return envelope.run_id
    category, _, identifier = envelope.stream.partition("-")
    if category == "seed":
        return identifier.rpartition(".")[0]
    return identifier if category in ("run", "decision", "report") else ""


def _insert(table: Table, positional: bool = False) -> Statement:
    """INSERT of every column; a positional one takes its values in the table's column order."""
    columns = [column.name for column in table.columns]
    sql = (
        f"INSERT INTO {{{table.name}}} ({', '.join(columns)}) "
        f"VALUES ({', '.join(':' + name for name in columns)})"
    )
    return Statement(f"insert_{table.name}", sql, (table.name,), positional=positional)


def _upsert(
    table: Table,
    name: str,
    keys: tuple[str, ...],
    columns: tuple[str, ...],
    update: str,
    defaults: Mapping[str, str] | None = None,
    collapse: str | None = None,
) -> Statement:
    """INSERT … ON CONFLICT DO UPDATE; `defaults` are SQL values inserted where a parameter is NULL."""
    values = [f"COALESCE(:{c}, {defaults[c]})" if defaults and c in defaults else f":{c}" for c in columns]
    sql = (
        f"INSERT INTO {{{table.name}}} ({', '.join(columns)}) VALUES ({', '.join(values)}) "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {update}"
    )
    return Statement(name, sql, (table.name,), collapse)


def _keep_old(table: str, columns: tuple[str, ...]) -> str:
    """SET clause: take each new value, keeping the stored one where the new value is NULL."""
    return ", ".join(f"{column} = COALESCE(:{column}, {{{table}}}.{column})" for column in columns)


def _row(table: Table, **values: Any) -> Params:
    row: Params = dict.fromkeys(table.columns.keys())
    row.update(values)
    return row


def _supersede(table: Table) -> Statement:
    sql = (
        f"UPDATE {{{table.name}}} SET superseded_at = :at WHERE run_id = :run_id "
        "AND position BETWEEN :low AND :high AND superseded_at IS NULL"
    )
    return Statement(f"supersede_{table.name}", sql, (table.name,))


def _supersede_params(envelope: pb.EventEnvelope, payload: pb.RollbackCompleted) -> Params:
    return {
        "at": envelope.global_position,
        "run_id": payload.run_id or run_of(envelope),
        "low": payload.superseded_from,
        "high": payload.superseded_to,
    }


# ---------------------------------------------------------------- runs

INSERT_EPOCH = _insert(schema.run_epochs, positional=True)
INSERT_HOOK = _insert(schema.run_hooks, positional=True)
INSERT_CHECKPOINT = _insert(schema.run_checkpoints, positional=True)
INSERT_ROLLBACK = _insert(schema.run_rollbacks)
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
UPSERT_RUN_STARTED = _upsert(
    schema.runs,
    "run_started",
    ("run_id",),
    RUN_STARTED_COLUMNS,
    _keep_old("runs", RUN_STARTED_COLUMNS[1:-1]),
)
RUN_PROGRESS_COLUMNS = ("run_id", "status", "last_epoch", "last_position", "rollbacks")
UPSERT_RUN_PROGRESS = _upsert(
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
UPSERT_RUN_ENDED = _upsert(
    schema.runs,
    "run_ended",
    ("run_id",),
    RUN_ENDED_COLUMNS,
    _keep_old("runs", RUN_ENDED_COLUMNS[1:-1]),
)
RUN_ROLLED_BACK = Statement(
    "run_rolled_back",
    "UPDATE {runs} SET rollbacks = rollbacks + 1, last_position = :position, last_epoch = ("
    "SELECT MAX(epoch) FROM {run_epochs} WHERE run_id = :run_id AND superseded_at IS NULL) "
    "WHERE run_id = :run_id",
    ("runs", "run_epochs"),
)
RUN_SUPERSEDE = tuple(
    _supersede(table) for table in (schema.run_epochs, schema.run_hooks, schema.run_checkpoints)
)


def project_runs(envelope: pb.EventEnvelope, payload: Message) -> list[Change]:
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
        row = _row(
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
    if isinstance(payload, pb.RollbackCompleted):
        supersede = _supersede_params(envelope, payload)
        changes: list[Change] = [(statement, supersede) for statement in RUN_SUPERSEDE]
        row = _row(
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
        row = _row(
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
        row = _row(
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


# ---------------------------------------------------------------- seed lifecycle

INSERT_SEED_EVENT = _insert(schema.seed_events)
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
SEED_SUPERSEDE = _supersede(schema.seed_events)
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
    return _row(
        schema.seed_events,
        position=envelope.global_position,
        stream=envelope.stream,
        run_id=run_id,
        slot=slot,
        event_type=envelope.event_type,
        event_id=envelope.event_id,
        correlation_id=_or_none(envelope.correlation_id),
        causation_id=_or_none(envelope.causation_id),
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


def project_seeds(envelope: pb.EventEnvelope, payload: Message) -> list[Change]:
    if isinstance(payload, pb.RollbackCompleted):
        params = _supersede_params(envelope, payload)
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
        command_id = _or_none(payload.command_id)
        blueprint_id = _or_none(payload.blueprint_id)
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
        command_id = _or_none(payload.command_id)
        blueprint_id = _or_none(payload.blueprint_id)
        artifact_hash = _or_none(payload.artifact_hash)
        event = _seed_event(
            envelope,
            run_id,
            payload.slot,
            seed_id=payload.seed_id,
            command_id=command_id,
            epoch=_epoch(envelope),
            blueprint_id=blueprint_id,
            artifact_hash=artifact_hash,
            detail_json=_json(detail),
        )
        seed = _seed_upsert(
            envelope,
            run_id,
            payload.slot,
            seed_id=payload.seed_id,
            blueprint_id=blueprint_id,
            artifact_hash=artifact_hash,
            command_id=command_id,
            epoch=_epoch(envelope),
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
            detail_json=_json(detail),
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
    if isinstance(payload, pb.CommandRejected):
        detail = {"code": payload.code}
        event = _seed_event(
            envelope,
            run_id,
            payload.slot,
            from_stage=STAGES.get(payload.stage),
            command_id=_or_none(payload.command_id),
            reason=payload.reason,
            epoch=_epoch(envelope),
            detail_json=_json(detail),
        )
        return [(INSERT_SEED_EVENT, event)]
    return []


# ---------------------------------------------------------------- decisions and commands

INSERT_DECISION = _insert(schema.decisions, positional=True)
COMMAND_COLUMNS = tuple(schema.commands.columns.keys())
UPSERT_COMMAND = _upsert(
    schema.commands,
    "upsert_command",
    ("command_id",),
    COMMAND_COLUMNS,
    ", ".join(f"{column} = excluded.{column}" for column in COMMAND_COLUMNS[1:]),
)
DECISION_SUPERSEDE = _supersede(schema.decisions)
COMMAND_SUPERSEDE = _supersede(schema.commands)


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


def project_decisions(envelope: pb.EventEnvelope, payload: Message) -> list[Change]:
    if isinstance(payload, pb.DecisionMade):
        decision = (
            envelope.global_position,
            envelope.event_id,
            run_of(envelope) or None,
            _epoch(envelope),
            payload.policy_name,
            payload.policy_version,
            RISK_LEVELS.get(payload.risk_level),
            payload.latency_ms,
            _or_none(payload.command_id),
            payload.action,
            payload.conservative,
            payload.reason,
            packet_hex(payload.packet_id),
            _json(payload.inputs_summary),
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
            "epoch": _epoch(envelope),
            "command_type": COMMAND_TYPES.get(command.command_type),
            "operation": OPERATIONS.get(seed_operation.operation) if seed_operation else None,
            "target_slot": command.target_slot,
            "target_seed_id": command.target_seed_id,
            "blueprint_id": _or_none(seed_operation.blueprint_id) if seed_operation else None,
            "policy_version": command.policy_version,
            "issued_by": command.issued_by,
            "decision_event_id": _or_none(payload.decision_event_id),
            "issued_at_ms": command.issued_at_ms,
            "command_json": _command_json(command),
            "superseded_at": None,
        }
        return [(UPSERT_COMMAND, row)]
    if isinstance(payload, pb.RollbackCompleted):
        params = _supersede_params(envelope, payload)
        return [(DECISION_SUPERSEDE, params), (COMMAND_SUPERSEDE, params)]
    return []


# ---------------------------------------------------------------- field reports

FIELD_REPORT_COLUMNS = tuple(schema.field_reports.columns.keys())
UPSERT_FIELD_REPORT = _upsert(
    schema.field_reports,
    "upsert_field_report",
    ("report_id",),
    FIELD_REPORT_COLUMNS,
    ", ".join(f"{column} = excluded.{column}" for column in FIELD_REPORT_COLUMNS[1:]),
)
FIELD_REPORT_SUPERSEDE = _supersede(schema.field_reports)
# Retention runs on the log's clock (the newest report's time), so incremental application and a rebuild
# prune the same rows; the log keeps every report.
FIELD_REPORT_RETENTION = Statement(
    "field_report_retention",
    "DELETE FROM {field_reports} WHERE occurred_at_ns < "
    "(SELECT MAX(occurred_at_ns) FROM {field_reports}) - :retention_ns",
    ("field_reports",),
)
DEFAULT_FIELD_REPORT_RETENTION_S = 24 * 3600.0


def project_field_reports(envelope: pb.EventEnvelope, payload: Message) -> list[Change]:
    if isinstance(payload, pb.FieldReportIssued):
        report = payload.report
        row = {
            "report_id": report.report_id or envelope.event_id,
            "position": envelope.global_position,
            "command_id": _or_none(report.command_id),
            "run_id": report.run_id or run_of(envelope) or None,
            "seed_id": report.seed_id,
            "slot": report.slot,
            "blueprint_id": _or_none(report.blueprint_id),
            "outcome": OUTCOMES.get(report.outcome),
            "delta_accuracy": report.delta_accuracy,
            "delta_loss": report.delta_loss,
            "delta_parameters": report.delta_parameters,
            "policy_version": report.policy_version,
            "risk_at_decision": RISK_LEVELS.get(report.risk_at_decision),
            "start_epoch": report.start_epoch,
            "end_epoch": report.end_epoch,
            "metrics_json": _json(report.metrics),
            "occurred_at_ns": envelope.occurred_at_ns,
            "superseded_at": None,
        }
        return [(UPSERT_FIELD_REPORT, row)]
    if isinstance(payload, pb.RollbackCompleted):
        return [(FIELD_REPORT_SUPERSEDE, _supersede_params(envelope, payload))]
    return []


# ---------------------------------------------------------------- blueprint catalogue

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
UPSERT_BLUEPRINT = _upsert(
    schema.blueprints,
    "upsert_blueprint",
    ("blueprint_id",),
    BLUEPRINT_COLUMNS,
    ", ".join(f"{column} = excluded.{column}" for column in BLUEPRINT_COLUMNS[1:]),
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
UPSERT_JOB = _upsert(
    schema.compile_jobs,
    "upsert_compile_job",
    ("job_id",),
    JOB_COLUMNS,
    _keep_old("compile_jobs", JOB_COLUMNS[1:]),
)
INSERT_COMPILE_EVENT = _insert(schema.compile_events)
ARTIFACT_COLUMNS = tuple(schema.artifacts.columns.keys())
UPSERT_ARTIFACT = _upsert(
    schema.artifacts,
    "upsert_artifact",
    ("artifact_hash",),
    ARTIFACT_COLUMNS,
    _keep_old("artifacts", ARTIFACT_COLUMNS[1:]),
)


def _job(job_id: str, position: int, status: str, **values: Any) -> Params:
    return _row(schema.compile_jobs, job_id=job_id, status=status, updated_position=position, **values)


def project_blueprints(envelope: pb.EventEnvelope, payload: Message) -> list[Change]:
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
    if isinstance(payload, pb.CompileJobQueued):
        job = _job(
            payload.job_id,
            position,
            "queued",
            blueprint_id=payload.blueprint_id,
            strategy=payload.strategy,
            attempts=0,
            max_attempts=payload.max_attempts,
            parameters_json=_json(payload.parameters),
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
        event = _row(
            schema.compile_events, position=position, job_id=payload.job_id, event_type=envelope.event_type
        )
        return [(UPSERT_JOB, job), (INSERT_COMPILE_EVENT, event), (BLUEPRINT_STATUS, status)]
    if isinstance(payload, pb.CompileJobStarted | pb.CompileJobFailed | pb.CompileJobSucceeded):
        event = _row(
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
            artifact_hash = _or_none(payload.artifact_hash)
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
        artifact = _row(
            schema.artifacts,
            artifact_hash=payload.artifact_hash,
            blueprint_id=_or_none(payload.blueprint_id),
            size_bytes=payload.size_bytes,
            strategy=_or_none(payload.strategy),
            slot_shape=",".join(str(n) for n in payload.slot_shape) or None,
            job_id=_or_none(payload.job_id),
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
        artifact = _row(
            schema.artifacts,
            artifact_hash=payload.artifact_hash,
            blueprint_id=_or_none(payload.blueprint_id),
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


# ---------------------------------------------------------------- policies

POLICY_COLUMNS = tuple(schema.policies.columns.keys())
UPSERT_POLICY = _upsert(
    schema.policies,
    "upsert_policy",
    ("version",),
    POLICY_COLUMNS,
    _keep_old("policies", POLICY_COLUMNS[1:]),
    {"active": "FALSE"},
)
DEACTIVATE_POLICIES = Statement(
    "deactivate_policies",
    "UPDATE {policies} SET active = :false, status = :status, updated_position = :position "
    "WHERE active = :true AND version <> :version",
    ("policies",),
)
INSERT_POLICY_EVENT = _insert(schema.policy_events)


def _policy(version: str, position: int, status: str, **values: Any) -> Params:
    return _row(schema.policies, version=version, status=status, updated_position=position, **values)


def _update_fields(update: pb.PolicyUpdate) -> Params:
    return {
        "policy_name": _or_none(update.policy_name),
        "content_hash": _or_none(update.content_hash),
        "parent_version": _or_none(update.parent_version),
        "artifact_path": _or_none(update.artifact_path),
        "lora": update.lora,
        "training_metrics_json": _json(update.training_metrics) if update.training_metrics else None,
    }


def project_policies(envelope: pb.EventEnvelope, payload: Message) -> list[Change]:
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
            validation_checks_json=_json(payload.checks),
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
        "epoch": payload.epoch if isinstance(payload, pb.PolicyActivation) else _epoch(envelope),
        "run_id": envelope.run_id or None,
    }
    changes.append((INSERT_POLICY_EVENT, event))
    return changes


# ---------------------------------------------------------------- alerts

ALERT_COLUMNS = tuple(schema.alerts.columns.keys())
UPSERT_ALERT = _upsert(
    schema.alerts,
    "upsert_alert",
    ("name",),
    ALERT_COLUMNS,
    _keep_old("alerts", ALERT_COLUMNS[1:]),
)
INSERT_ALERT_EVENT = _insert(schema.alert_events)


def project_alerts(envelope: pb.EventEnvelope, payload: Message) -> list[Change]:
    if not isinstance(payload, pb.Alert):
        return []
    position = envelope.global_position
    name = payload.name or envelope.stream.partition("-")[2]
    fired = envelope.event_type == "AlertFired"
    alert = _row(
        schema.alerts,
        name=name,
        state="firing" if fired else "resolved",
        severity=_or_none(payload.severity),
        summary=_or_none(payload.summary),
        labels_json=_json(payload.labels) if payload.labels else None,
        value=payload.value,
        fired_position=position if fired else None,
        resolved_position=None if fired else position,
        updated_position=position,
    )
    event = {
        "position": position,
        "name": name,
        "event_type": envelope.event_type,
        "severity": payload.severity,
        "summary": payload.summary,
        "value": payload.value,
    }
    return [(UPSERT_ALERT, alert), (INSERT_ALERT_EVENT, event)]


# ---------------------------------------------------------------- the read models

RUN_EVENTS = frozenset(
    {
        "RunStarted",
        "EpochCompleted",
        "EpochHookTimed",
        "EpochHookOverrun",
        "CheckpointCommitted",
        "RollbackRequested",
        "RollbackCompleted",
        "RunCompleted",
        "RunFailed",
    }
)


def build_projections(field_report_retention_s: float = DEFAULT_FIELD_REPORT_RETENTION_S) -> list[Projection]:
    retention = {"retention_ns": int(field_report_retention_s * 1e9)}

    def prune_field_reports() -> list[Change]:
        return [(FIELD_REPORT_RETENTION, retention)]

    return [
        Projection(
            "runs",
            2,  # 2: run_epochs keeps the whole state packet (migration 0002)
            (schema.runs, schema.run_epochs, schema.run_hooks, schema.run_checkpoints, schema.run_rollbacks),
            RUN_EVENTS,
            project_runs,
        ),
        Projection(
            "seed_lifecycle",
            1,
            (schema.seeds, schema.seed_events),
            frozenset(
                {
                    "SeedTransitioned",
                    "SeedGrafted",
                    "IsolationViolationDetected",
                    "CommandRejected",
                    "RollbackCompleted",
                }
            ),
            project_seeds,
        ),
        Projection(
            "decisions",
            1,
            (schema.decisions, schema.commands),
            frozenset({"DecisionMade", "AdaptationCommandIssued", "RollbackCompleted"}),
            project_decisions,
        ),
        Projection(
            "field_reports",
            1,
            (schema.field_reports,),
            frozenset({"FieldReportIssued", "RollbackCompleted"}),
            project_field_reports,
            prune_field_reports,
        ),
        Projection(
            "blueprint_catalog",
            1,
            (schema.blueprints, schema.compile_jobs, schema.compile_events, schema.artifacts),
            frozenset(
                {
                    "BlueprintRegistered",
                    "CompileJobQueued",
                    "CompileJobStarted",
                    "CompileJobFailed",
                    "CompileJobSucceeded",
                    "ArtifactStored",
                    "ArtifactCorrupted",
                }
            ),
            project_blueprints,
        ),
        Projection(
            "policies",
            1,
            (schema.policies, schema.policy_events),
            frozenset(
                {
                    "PolicyTrained",
                    "PolicyValidated",
                    "PolicyRejected",
                    "PolicyPublished",
                    "PolicyActivated",
                    "PolicyRolledBack",
                }
            ),
            project_policies,
        ),
        Projection(
            "alerts",
            1,
            (schema.alerts, schema.alert_events),
            frozenset({"AlertFired", "AlertResolved"}),
            project_alerts,
        ),
    ]


PROJECTION_NAMES = tuple(projection.name for projection in build_projections())
