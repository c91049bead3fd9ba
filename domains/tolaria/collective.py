"""What the trainer needs from the other ranks of a data-parallel run, behind one small interface.

    collective.wrap(model)                   # the module the training pass runs (DDP over the ranks)
    collective.shard(order)                  # this rank's share of the epoch's batch order
    collective.sum(tensors)                  # the epoch's sums, added over the ranks (one collective)
    collective.broadcast(payload, epoch)     # rank 0's bytes, on every rank (the boundary's decision)
    collective.agree(digest, epoch)          # every rank holds the same slots, stage and step, or RankDesync
    with collective.working(epoch, record):  # this rank's boundary work: past its deadline, RankHung

`SingleProcess` is the run of one process: every call returns its input, nothing is measured or copied,
so a one-process run is the run it was before data parallelism. `domains/tolaria/distributed.py` is the
torch.distributed one; ops/compose.py picks one from the environment torchrun sets.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

import torch
from torch import nn

from domains.tolaria.rollback import RunError


def launched() -> bool:
    """Started by torchrun (or by hand with its variables: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)
    with more than one rank."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


class RankFailure(RunError):
    """A data-parallel run cannot go on: a rank diverged or stopped answering at an epoch boundary."""

    def __init__(self, rank: int, epoch: int, reason: str) -> None:
        super().__init__(f"rank {rank} at epoch {epoch}: {reason}")
        self.rank = rank
        self.epoch = epoch


class RankDesync(RankFailure):
    """A rank's slot configuration, seed stages or step differ from rank 0's."""


class RankLost(RankFailure):
    """A rank died or did not answer within the process group's timeout."""


class RankHung(RankFailure):
    """A rank's process is alive but its work stopped: its boundary work passed its deadline, it stopped
    beating, or it answers without reaching the collective the others wait in."""


class Collective(Protocol):
    rank: int
    world_size: int

    @property
    def leads(self) -> bool:
        """Rank 0: it runs the controller and writes the run's events and checkpoints."""
        ...

    def wrap(self, model: nn.Module) -> nn.Module: ...

    def shard(self, order: torch.Tensor) -> torch.Tensor: ...

    def local_batch(self, batch_size: int) -> int: ...

    def sum(self, tensors: list[torch.Tensor], epoch: int) -> list[torch.Tensor]: ...

    def broadcast(self, payload: bytes, epoch: int) -> bytes:
        """Rank 0's payload on every rank (the others' payload is ignored)."""
        ...

    def agree(self, digest: bytes, epoch: int) -> None: ...

    def barrier(self, epoch: int) -> None: ...

    def failing_as(self, epoch: int) -> AbstractContextManager[None]: ...

    def working(self, epoch: int, record: Callable[[BaseException], None]) -> AbstractContextManager[None]:
        """This rank's own work at a boundary (rank 0's decision, another rank's applying it), which must
        end within the boundary deadline; `record` records a RunFailed (the leading rank's)."""
        ...

    def close(self) -> None: ...


class SingleProcess:
    """The collective of a run of one process."""

    rank = 0
    world_size = 1

    @property
    def leads(self) -> bool:
        return True

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        return order

    def local_batch(self, batch_size: int) -> int:
        return batch_size

    def sum(self, tensors: list[torch.Tensor], epoch: int) -> list[torch.Tensor]:
        return tensors

    def broadcast(self, payload: bytes, epoch: int) -> bytes:
        return payload

    def agree(self, digest: bytes, epoch: int) -> None:
        return None

    def barrier(self, epoch: int) -> None:
        return None

    def failing_as(self, epoch: int) -> AbstractContextManager[None]:
        return nullcontext()

    def working(self, epoch: int, record: Callable[[BaseException], None]) -> AbstractContextManager[None]:
        return nullcontext()

    def close(self) -> None:
        return None


def shard_order(order: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank `rank`'s share of an epoch's order: padded (from its start) to a multiple of the world size,
    then every world_size-th index from `rank`, so every rank trains the same number of steps and the
    shares are a pure function of (seed, epoch), like the order. A world size that divides the order
    returns the same indices as one process, in another interleaving."""
    padded_size = math.ceil(len(order) / world_size) * world_size
    padded = order.repeat(math.ceil(padded_size / len(order)))[:padded_size] if len(order) else order
    return padded[rank::world_size]


def local_batch_size(batch_size: int, world_size: int) -> int:
    """Each rank's batch: the global batch split over the ranks (the same global batch as one process
    when the world size divides it)."""
    return max(1, math.ceil(batch_size / world_size))


def agreement_digest(
    slots: Sequence[tuple[str, ...]], parameters: Sequence[tuple[str, tuple[int, ...]]], step: tuple[int, ...]
) -> bytes:
    """What every rank must hold alike at a boundary: each slot's name, kind, shape, stage and seed, the
    trainable parameters' names and shapes, and (epoch, global step, generation)."""
    text = repr((sorted(slots), parameters, step))
    return hashlib.sha256(text.encode()).digest()[:16]


def first_divergent(digests: list[bytes]) -> int | None:
    """The lowest rank whose digest differs from rank 0's, or None when they all agree."""
    return next((rank for rank, digest in enumerate(digests) if digest != digests[0]), None)
