"""What a run reports: the progress callbacks after each epoch and the summary at its end."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from domains.tolaria.loop import EpochMeasurements
from domains.tolaria.rollback import RollbackResult


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
