"""Headroom of the dormant slots, measured on the training pass itself (no extra forward or backward).

For a slot whose activation is a and a sample's loss ℓ, a residual graft that changes a by δ changes the
loss by about ∇ₐℓ·δ; with ‖δ‖ = ‖a‖ (a change of the activation's own size) the largest first-order
decrease is ‖∇ₐℓ‖·‖a‖. A slot's headroom is the mean of that over the epoch's training samples: where
the loss is most sensitive to what a graft can change. Every `sample_every`-th training batch is measured
(default 4: the hooks cost tens of µs per slot and batch, which a small host's epoch notices). The
trainer's loss is the batch mean, so the gradient that reaches the activation is ∇ₐℓ / B. Everything
accumulates on the device; `drain` reads it once, at the epoch boundary. The controller gets the values
in its seed states (`with_headroom`); Tamiyo records them in its DecisionMade inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from leyline import pb
from leyline.seed_metrics import HEADROOM_METRIC


class _Accumulator:
    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.samples = 0
        self.batches = 0

    def add(self, activation: torch.Tensor, grad: torch.Tensor) -> None:
        batch = grad.shape[0]
        value = (grad.flatten(1).norm(dim=1) * activation.flatten(1).norm(dim=1)).sum() * batch
        self.total = value if self.total is None else self.total + value
        self.samples += batch


class HeadroomMeter:
    """Watches the slots while they are DORMANT; `drain()` gives slot → headroom for the last epoch."""

    def __init__(self, slots: Mapping[int, nn.Module], sample_every: int = 4, active: bool = True) -> None:
        if sample_every < 1:
            raise ValueError(f"sample_every must be at least 1, got {sample_every}")
        self.sample_every = sample_every
        self.slots = dict(slots)
        self.accumulators = {slot_no: _Accumulator() for slot_no in slots}
        self.handles: list[RemovableHandle] = []
        self.activate(active)

    @property
    def active(self) -> bool:
        return bool(self.handles)

    def activate(self, on: bool) -> None:
        """Watch the slots or stop watching them (an inactive meter costs the training step nothing)."""
        if on and not self.handles:
            self.handles = [
                module.register_forward_hook(self._hook(self.accumulators[slot_no]))
                for slot_no, module in self.slots.items()
            ]
        elif not on:
            for handle in self.handles:
                handle.remove()
            self.handles = []

    def _hook(self, accumulator: _Accumulator) -> Any:
        def watch(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            dormant = getattr(module, "stage", pb.SEED_STAGE_DORMANT) == pb.SEED_STAGE_DORMANT
            if not (dormant and module.training and output.requires_grad):
                return
            accumulator.batches += 1
            if (accumulator.batches - 1) % self.sample_every:
                return
            activation = output.detach()
            output.register_hook(lambda grad: accumulator.add(activation, grad.detach()))

        return watch

    def drain(self) -> dict[int, float]:
        """Headroom per slot measured since the last drain (slots not dormant then are absent); resets."""
        totals = {n: a.total for n, a in self.accumulators.items() if a.total is not None}
        values = torch.stack(list(totals.values())).tolist() if totals else []
        headroom = {n: v / self.accumulators[n].samples for n, v in zip(totals, values, strict=True)}
        for accumulator in self.accumulators.values():
            accumulator.total, accumulator.samples, accumulator.batches = None, 0, 0
        return headroom


def with_headroom(seeds: Iterable[pb.SeedState], headroom: Mapping[int, float]) -> list[pb.SeedState]:
    """The seed states for the controller: copies of the measured slots' with `metrics[HEADROOM_METRIC]` set.
    The packet in the log keeps its own (SPEC's 280-byte budget has no room for three more entries)."""
    annotated = []
    for seed in seeds:
        if seed.slot in headroom:
            measured = pb.SeedState()
            measured.CopyFrom(seed)
            measured.metrics[HEADROOM_METRIC] = headroom[seed.slot]
            seed = measured
        annotated.append(seed)
    return annotated
