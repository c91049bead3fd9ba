"""The torch.distributed collective: gloo on CPU, NCCL on CUDA, a short timeout, typed failures.

Started from the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).
Two process groups: the default one, with a short timeout, carries the gradients, the epoch's sums and
the agreement check, which every rank reaches at the same point of its work; a gloo group with a long
timeout carries what waits on rank 0's own work at a boundary (the controller, a seed's first compile, a
rollback's restore): the decision broadcast and the barriers. A rank that dies closes its sockets, so
the others fail at their next collective at once, whatever the timeout.

Every collective call runs under `failing_as(epoch)`: a backend error (a peer's socket closed, a
timeout) becomes RankLost naming the rank that stopped answering and the epoch. The first rank to see a
failure names the lost rank in the rendezvous store (the ranks that do not report themselves alive
within REPORT_WAIT_S); the ranks that fail after it raise the same RankLost. A rank that cannot reach the
store names rank 0, which hosts it when the ranks were started without torchrun. A rank that does not
report itself although its heartbeat goes on is hung, not lost (RankHung), and so is a rank the
heartbeat named (domains/tolaria/heartbeat.py: a rank whose own boundary work passes its deadline, or
whose beat stops, fails the run within seconds, even while the others wait on the long control group).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from domains.kasmina import SeedSlot
from domains.tolaria.collective import (
    RankDesync,
    RankFailure,
    RankLost,
    first_divergent,
    local_batch_size,
    shard_order,
)
from domains.tolaria.config import DEFAULT_RANK_TIMEOUT_S
from domains.tolaria.heartbeat import FAILED_KEY, Heartbeat, beat_key, named_failure

CONTROL_TIMEOUT_S = 600.0  # rank 0's work at a boundary: a seed's first compile on a loaded CPU included
REPORT_WAIT_S = 0.5  # how long a failing rank waits for the others to report themselves alive
FRAME_BYTES = 2048  # a broadcast's first frame: a signed command fits
# gloo reports a peer's death as a plain RuntimeError whose text names the backend's source
BACKEND_TEXT = re.compile(r"gloo|nccl|c10d|ProcessGroup|Connection closed by peer", re.IGNORECASE)


class TorchCollective:
    """The ranks of one run in a torch.distributed process group."""

    def __init__(self, device: torch.device, timeout_s: float = DEFAULT_RANK_TIMEOUT_S) -> None:
        self.rank = int(os.environ["RANK"])
        self.world_size = int(os.environ["WORLD_SIZE"])
        self.device = device
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
        self._control = dist.new_group(backend="gloo", timeout=timedelta(seconds=CONTROL_TIMEOUT_S))
        self._store = _rendezvous_store()
        self._heartbeat = Heartbeat(self._store, self.rank, self.world_size)
        self._signature: tuple[tuple[int, bool], ...] = ()
        self._wrapped: nn.Module | None = None

    @property
    def leads(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """DDP over the model, wrapped again whenever its trainable parameters changed (a graft, a cull,
        a seed frozen): DDP only reduces the parameters it was wrapped with."""
        signature = tuple((id(p), p.requires_grad) for p in model.parameters())
        if self._wrapped is None or signature != self._signature:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            # a seed outside the running stages is in the module tree but not in the forward
            seeded = any(isinstance(m, SeedSlot) and m.seed is not None for m in model.modules())
            self._wrapped = DistributedDataParallel(
                model, device_ids=device_ids, find_unused_parameters=seeded
            )
            self._signature = signature
        return self._wrapped

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        return shard_order(order, self.rank, self.world_size)

    def local_batch(self, batch_size: int) -> int:
        return local_batch_size(batch_size, self.world_size)

    def sum(self, tensors: list[torch.Tensor], epoch: int) -> list[torch.Tensor]:
        stacked = torch.stack([t.to(torch.float64) for t in tensors])
        with self.failing_as(epoch):
            dist.all_reduce(stacked)
        return [value.to(t.dtype) for value, t in zip(stacked.unbind(), tensors, strict=True)]

    def broadcast(self, payload: bytes, epoch: int) -> bytes:
        """One broadcast of a fixed frame (its length, then up to FRAME_BYTES of payload), a second one
        only for a payload longer than that: a boundary's decision (a signed command: hundreds of bytes)
        takes one collective, and nothing is unpickled."""
        frame = torch.zeros(8 + FRAME_BYTES, dtype=torch.uint8)
        if self.leads:
            frame[:8] = _as_tensor(len(payload).to_bytes(8, "little"))
            frame[8 : 8 + min(len(payload), FRAME_BYTES)] = _as_tensor(payload[:FRAME_BYTES])
        with self.failing_as(epoch):
            dist.broadcast(frame, src=0, group=self._control)
            length = int.from_bytes(frame[:8].numpy().tobytes(), "little")
            rest = torch.zeros(max(0, length - FRAME_BYTES), dtype=torch.uint8)
            if len(rest):
                if self.leads:
                    rest[:] = _as_tensor(payload[FRAME_BYTES:])
                dist.broadcast(rest, src=0, group=self._control)
        return frame[8 : 8 + min(length, FRAME_BYTES)].numpy().tobytes() + rest.numpy().tobytes()

    def agree(self, digest: bytes, epoch: int) -> None:
        mine = torch.tensor(list(digest), dtype=torch.uint8, device=self._object_device())
        gathered = [torch.empty_like(mine) for _ in range(self.world_size)]
        with self.failing_as(epoch):
            dist.all_gather(gathered, mine)
        divergent = first_divergent([bytes(t.tolist()) for t in gathered])
        if divergent is not None:
            raise RankDesync(
                divergent, epoch, "its slot configuration, seed stages or step differ from rank 0's"
            )

    def barrier(self, epoch: int) -> None:
        with self.failing_as(epoch):
            dist.barrier(group=self._control)

    def working(self, epoch: int, record: Callable[[BaseException], None]) -> AbstractContextManager[None]:
        return self._heartbeat.working(epoch, record)

    def close(self) -> None:
        self._heartbeat.close()
        if dist.is_initialized():
            dist.destroy_process_group()

    def _object_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    @contextmanager
    def failing_as(self, epoch: int) -> Iterator[None]:
        """A backend error inside (a collective, or the training pass's gradient all-reduce) as RankLost
        (or RankHung); meanwhile the heartbeat watches the other ranks."""
        try:
            with self._heartbeat.waiting(epoch):
                yield
        except RuntimeError as exc:
            if not (isinstance(exc, dist.DistError) or BACKEND_TEXT.search(str(exc))):
                raise
            if not self._heartbeat.claim():
                while True:  # the heartbeat is failing the run and ends this process
                    time.sleep(1)
            reason = f"stopped answering (seen by rank {self.rank}: {type(exc).__name__}: {exc})"
            raise self._failed_rank(epoch, reason[:400]) from exc

    def _failed_rank(self, epoch: int, reason: str) -> RankFailure:
        """The failure the first failing rank named; named now if this rank is the first: the first rank
        that did not report itself alive, hung if its heartbeat went on meanwhile (see the module
        docstring)."""
        try:
            if not self._store.check([FAILED_KEY]):
                self._store.set(f"esper/alive/{self.rank}", "1")
                others = [rank for rank in range(self.world_size) if rank != self.rank]
                beats = {rank: self._beat(rank) for rank in others}
                deadline = time.monotonic() + REPORT_WAIT_S
                missing = others
                while missing and time.monotonic() < deadline:
                    time.sleep(0.02)
                    missing = [rank for rank in others if not self._store.check([f"esper/alive/{rank}"])]
                lost = missing[0] if missing else self.rank
                beating = lost != self.rank and self._beat(lost) not in (beats[lost], None)
                self._store.compare_set(FAILED_KEY, "", f"{lost}:{epoch}" + (":alive" if beating else ""))
            named = self._store.get(FAILED_KEY).decode()
        except (RuntimeError, ValueError):
            return RankLost(0, epoch, reason)
        return named_failure(named, reason)

    def _beat(self, rank: int) -> str | None:
        key = beat_key(rank)
        return self._store.get(key).decode() if self._store.check([key]) else None


def _as_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)


def _rendezvous_store() -> dist.Store:
    """The key-value store the ranks met through (torchrun's, or a TCPStore at MASTER_ADDR)."""
    from torch.distributed.distributed_c10d import _get_default_store

    store: dist.Store = _get_default_store()
    return store
