"""What a run reports: the progress callbacks after each epoch and the summary at its end."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import subprocess
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from domains.tolaria.loop import EpochMeasurements
from domains.tolaria.rollback import RollbackResult
from leyline import decode_payload, pb
from leyline.lifecycle import CULLED, FOSSILIZED, TERMINATED, stage_name

OUTCOME_STAGES = frozenset({FOSSILIZED, CULLED, TERMINATED})  # where a graft's story ends


@dataclass(frozen=True)
class GraftSummary:
    """One graft of the run: where, what, its size, and the validation accuracy before and after.

    `accuracy_before` is measured at the boundary that grafted it (before the graft), `accuracy_after` at
    the boundary where it reached `stage` (FOSSILIZED, CULLED or TERMINATED; else its stage at run end),
    with the seed as it then was."""

    slot: int
    seed_id: int
    blueprint_id: str
    parameters: int
    epoch: int
    accuracy_before: float
    stage: str
    end_epoch: int
    accuracy_after: float
    reason: str


def graft_summaries(events: Iterable[pb.EventEnvelope]) -> list[GraftSummary]:
    """The grafts a run's EpochCompleted, SeedGrafted and SeedTransitioned events describe, in order."""
    accuracy: dict[int, float] = {}
    grafts: dict[tuple[int, int], GraftSummary] = {}
    for envelope in events:
        payload = decode_payload(envelope)
        if isinstance(payload, pb.EpochCompleted):
            accuracy[payload.state.epoch] = payload.state.validation_accuracy
        elif isinstance(payload, pb.SeedGrafted):
            before = accuracy.get(envelope.epoch, math.nan)
            grafts[(payload.slot, payload.seed_id)] = GraftSummary(
                payload.slot,
                payload.seed_id,
                payload.blueprint_id,
                payload.parameters,
                envelope.epoch,
                before,
                "GERMINATED",
                envelope.epoch,
                math.nan,
                "",
            )
        elif isinstance(payload, pb.SeedTransitioned) and (payload.slot, payload.seed_id) in grafts:
            graft = grafts[(payload.slot, payload.seed_id)]
            if graft.stage not in {stage_name(s) for s in OUTCOME_STAGES}:
                grafts[(payload.slot, payload.seed_id)] = dataclasses.replace(
                    graft, stage=stage_name(payload.to_stage), end_epoch=payload.epoch, reason=payload.reason
                )
    return [
        dataclasses.replace(graft, accuracy_after=accuracy.get(graft.end_epoch, math.nan))
        for graft in grafts.values()
    ]


@dataclass
class RunSummary:
    run_id: str
    status: str
    epochs: int
    test_accuracy: float
    validation_accuracy: float
    parameters: int
    seeds: dict[str, int]
    last_position: int
    model_sha256: str
    events_written: int
    rollbacks: int
    resumed: bool
    device: str
    grafts: list[GraftSummary] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Progress:
    """What the loop reports after each epoch (the CLI shows it as a progress bar)."""

    on_start: Callable[[int, int], None] = lambda total, epoch: None
    on_epoch: Callable[[EpochMeasurements, dict[str, int]], None] = lambda m, s: None
    on_rollback: Callable[[RollbackResult], None] = lambda r: None


def new_run_id() -> str:
    return "r" + uuid.uuid4().hex[:8]


def code_version() -> str:
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return described.stdout.strip() or "unknown"


def model_sha256(model: nn.Module) -> str:
    """Hash of the weights: names, dtypes, shapes and bytes of the state dict in order."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        value = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()
