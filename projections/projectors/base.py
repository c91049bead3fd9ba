"""What every projector shares: statements, the read-model record, enum names and row helpers (SPEC §6).

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

from leyline import pb

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


DEFAULT_FIELD_REPORT_RETENTION_S = 24 * 3600.0


@dataclass(frozen=True)
class Options:
    """What a deployment may set about the read models; every module's `projection(options)` takes it."""

    field_report_retention_s: float = DEFAULT_FIELD_REPORT_RETENTION_S


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


def as_json(mapping: Mapping[str, Any]) -> str:
    return _encode(dict(sorted(mapping.items()))) if mapping else "{}"


def or_none(value: str) -> str | None:
    return value or None


def epoch_of(envelope: pb.EventEnvelope) -> int | None:
    return envelope.epoch if envelope.HasField("epoch") else None


def run_of(envelope: pb.EventEnvelope) -> str:
    """The run an event belongs to: the envelope's run_id, else the id of a run-/seed-/decision- stream."""
    if envelope.run_id:
        return envelope.run_id
    category, _, identifier = envelope.stream.partition("-")
    if category == "seed":
        return identifier.rpartition(".")[0]
    return identifier if category in ("run", "decision", "report") else ""


def insert_statement(table: Table, positional: bool = False) -> Statement:
    """INSERT of every column; a positional one takes its values in the table's column order."""
    columns = [column.name for column in table.columns]
    sql = (
        f"INSERT INTO {{{table.name}}} ({', '.join(columns)}) "
        f"VALUES ({', '.join(':' + name for name in columns)})"
    )
    return Statement(f"insert_{table.name}", sql, (table.name,), positional=positional)


def upsert_statement(
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


def keep_old(table: str, columns: tuple[str, ...]) -> str:
    """SET clause: take each new value, keeping the stored one where the new value is NULL."""
    return ", ".join(f"{column} = COALESCE(:{column}, {{{table}}}.{column})" for column in columns)


def blank_row(table: Table, **values: Any) -> Params:
    row: Params = dict.fromkeys(table.columns.keys())
    row.update(values)
    return row


def supersede_statement(table: Table) -> Statement:
    sql = (
        f"UPDATE {{{table.name}}} SET superseded_at = :at WHERE run_id = :run_id "
        "AND position BETWEEN :low AND :high AND superseded_at IS NULL"
    )
    return Statement(f"supersede_{table.name}", sql, (table.name,))


def supersede_params(envelope: pb.EventEnvelope, payload: pb.RollbackCompleted) -> Params:
    return {
        "at": envelope.global_position,
        "run_id": payload.run_id or run_of(envelope),
        "low": payload.superseded_from,
        "high": payload.superseded_to,
    }
