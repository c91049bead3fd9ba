"""The faults `esper drill` injects that need code of their own: a controller policy that stalls, a seed
module that leaks gradient into the host (no compiled template can: Kasmina detaches a training seed's
input, so the leak closes over a host parameter, as a buggy hand-written seed would), and an artifact
library on a full file system."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from domains.urza.library import ArtifactLibrary

LEAK_SCALE = 0.01


class StallingPolicy:
    """The heuristic policy, stalled past any decision timeout for the first `stall_epochs` epochs."""

    def __init__(self, inner: Any, stall_epochs: int, stall_s: float) -> None:
        self.inner = inner
        self.name = inner.name
        self.version = inner.version
        self.stall_epochs = stall_epochs
        self.stall_s = stall_s

    def decide(self, state: Any, observation: Any) -> Any:
        if observation.epoch <= self.stall_epochs:
            time.sleep(self.stall_s)  # the controller's timeout cuts it short
        return self.inner.decide(state, observation)


class Leaking(nn.Module):
    """A seed module that also reads a host parameter: gradient reaches the host through it."""

    def __init__(self, inner: nn.Module, host_parameter: Callable[[], nn.Parameter]) -> None:
        super().__init__()
        self.inner = inner
        self.host_parameter = host_parameter  # behind a function: not registered as the seed's own

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.inner(x)
        return out + self.host_parameter().sum() * LEAK_SCALE


class LeakingSource:
    """The production module source; the first module it hands out is wrapped in `Leaking`."""

    def __init__(self, inner: Any, host_parameter: Callable[[], nn.Parameter]) -> None:
        self.inner = inner
        self.host_parameter = host_parameter
        self.leaked = False

    def load_module(
        self, blueprint_id: str, parameters: Any, slot_kind: int, slot_shape: tuple[int, ...]
    ) -> tuple[nn.Module, str]:
        module, artifact_hash = self.inner.load_module(blueprint_id, parameters, slot_kind, slot_shape)
        if self.leaked:
            return module, artifact_hash
        self.leaked = True
        return Leaking(module, self.host_parameter), artifact_hash


class FullDiskLibrary(ArtifactLibrary):
    """Urza's library on a file system that is full for the first `refused_writes` writes (ENOSPC, as the
    kernel reports it), then has room again."""

    def __init__(self, root: Any, store: Any, refused_writes: int) -> None:
        super().__init__(root, store)
        self.refused_writes = refused_writes

    def put(self, data: bytes) -> str:
        if self.refused_writes > 0:
            self.refused_writes -= 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.root))
        return super().put(data)
