"""Adversarial templates BP043–BP050: seeds built to fail (exploding or vanishing gradients, NaN, noise,
faults), which Karn quarantines and Kasmina's gates must catch."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from domains.karn.blocks import (
    from_tokens,
    to_tokens,
)
from domains.karn.templates.base import Params, Shape, Template


class ExplodingGradient(Template):
    """Forward value x + W x; gradients through W x are multiplied by `gain` (bounded by its range)."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        self.gain = float(p["gain"])
        self.proj = nn.Linear(self.features, self.features)

    def forward(self, x: Tensor) -> Tensor:
        z = from_tokens(self.proj(to_tokens(x, self.kind)), x, self.kind)
        return x + self.gain * z - (self.gain - 1.0) * z.detach()


class VanishingGradient(Template):
    """Forward value W x; gradients to the input and W are multiplied by `scale` (≪ 1)."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        self.scale = float(p["scale"])
        self.proj = nn.Linear(self.features, self.features)

    def forward(self, x: Tensor) -> Tensor:
        z = from_tokens(self.proj(to_tokens(x, self.kind)), x, self.kind)
        return self.scale * z + (1.0 - self.scale) * z.detach()


class NanInjection(Template):
    """x + W x, except every `period`-th call (counted in a buffer) returns all-NaN output."""

    calls: Tensor

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        self.period = int(p["period"])
        self.proj = nn.Linear(self.features, self.features)
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))

    def forward(self, x: Tensor) -> Tensor:
        self.calls.add_(1)
        out = x + from_tokens(self.proj(to_tokens(x, self.kind)), x, self.kind)
        poisoned = torch.remainder(self.calls, self.period) == 0
        return torch.where(poisoned, torch.full_like(out, float("nan")), out)


class AdversarialNoise(Template):
    """x + W x plus noise of L∞ norm `epsilon`: random sign noise along a learned direction."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        self.epsilon = float(p["epsilon"])
        self.proj = nn.Linear(self.features, self.features)
        self.direction = nn.Parameter(torch.randn(*shape))

    def forward(self, x: Tensor) -> Tensor:
        clean = x + from_tokens(self.proj(to_tokens(x, self.kind)), x, self.kind)
        noise = torch.sign(torch.randn_like(x) + torch.tanh(self.direction))
        return clean + self.epsilon * noise


class FaultCarrier(Template):
    """The tensor part of a side-effect fault template (faults.py adds the fault around it): x + W x."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        self.proj = nn.Linear(self.features, self.features)

    def forward(self, x: Tensor) -> Tensor:
        return x + from_tokens(self.proj(to_tokens(x, self.kind)), x, self.kind)
