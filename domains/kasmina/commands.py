"""The commands Kasmina's aggregate decides on: translated from signed AdaptationCommands (Germinate,
Advance, Cull, Terminate, Reject) or raised by the shell itself (Tick, RecordViolation, Scrubbed)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from domains.kasmina.gates import Gate, Measurements


@dataclass(frozen=True)
class Germinate:
    command_id: str
    slot: int
    epoch: int
    blueprint_id: str
    artifact_hash: str
    g0: Gate
    alpha_ramp_epochs: int = 0  # 0: the configured default
    parameters: int = 0  # parameter count of the module
    latency_ms: float = 0.0


@dataclass(frozen=True)
class Advance:
    command_id: str
    slot: int
    epoch: int
    measurements: Measurements


@dataclass(frozen=True)
class Cull:
    command_id: str
    slot: int
    epoch: int
    reason: str = "cull command"


@dataclass(frozen=True)
class Terminate:
    command_id: str
    slot: int
    epoch: int
    reason: str = "terminated"


@dataclass(frozen=True)
class Reject:
    """A command refused before it reached the lifecycle (signature, deadline, unsupported)."""

    command_id: str
    slot: int
    code: str
    reason: str


@dataclass(frozen=True)
class Tick:
    """An epoch boundary: admission, gates, alpha ramp and embargo countdown for every slot. `final`: the
    run's last boundary (KasminaConfig.run_epochs), where G4 has no extension left to wait for."""

    epoch: int
    measurements: Mapping[int, Measurements]
    final: bool = False


@dataclass(frozen=True)
class RecordViolation:
    slot: int
    epoch: int
    parameter: str
    gradient_norm: float


@dataclass(frozen=True)
class Scrubbed:
    """The manager scrubbed a RESETTING slot; `clean` names each check (G5)."""

    slot: int
    epoch: int
    clean: Mapping[str, bool]


Command = Germinate | Advance | Cull | Terminate | Reject | Tick | RecordViolation | Scrubbed
