"""Experimental templates BP036–BP042: mixture of experts, hierarchical attention, memory, ODE, NAS, meta
and recursive layers (approved from the CLI before a live graft)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from domains.karn.blocks import (
    MLP,
    SelfAttention,
    conv_nd,
    from_channels,
    from_tokens,
    to_channels,
    to_tokens,
    window_mask,
)
from domains.karn.templates.base import Params, Shape, Template


class MixtureOfExperts4(Template):
    """Four expert MLPs; a router keeps the top-k per position (the others' weights are zeroed)."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        self.top_k = int(p["top_k"])
        self.experts = nn.ModuleList(MLP(self.features, int(p["hidden"])) for _ in range(4))
        self.router = nn.Linear(self.features, 4)

    def forward(self, x: Tensor) -> Tensor:
        tokens = to_tokens(x, self.kind)
        logits = self.router(tokens)
        kth = logits.topk(self.top_k, dim=-1).values[..., -1:]
        weights = F.softmax(logits.masked_fill(logits < kth, float("-inf")), dim=-1)
        out = torch.zeros_like(tokens)
        for index, expert in enumerate(self.experts):
            out = out + weights[..., index : index + 1] * expert(tokens)
        return x + from_tokens(out, x, self.kind)


class HierarchicalAttention(Template):
    """Attention within windows of positions, then between window summaries, broadcast back."""

    mask: Tensor

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        window = int(p["window"])
        head_dim = int(p["head_dim"])
        self.windows = math.ceil(self.positions / window)
        self.padded = self.windows * window
        self.window = window
        self.local = SelfAttention(self.features, 1, head_dim)
        self.summary = SelfAttention(self.features, 1, head_dim)
        self.register_buffer("mask", window_mask(self.padded, window))

    def forward(self, x: Tensor) -> Tensor:
        tokens = to_tokens(x, self.kind)
        padded = F.pad(tokens, (0, 0, 0, self.padded - self.positions))
        local = padded + self.local(padded, self.mask)
        summaries = local.reshape(local.shape[0], self.windows, self.window, self.features).mean(dim=2)
        context = self.summary(summaries).repeat_interleave(self.window, dim=1)
        return from_tokens((local + context)[:, : self.positions], x, self.kind)


class MemoryAugmented(Template):
    """Reads a learned key/value memory and gates the read into the features."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        slots = int(p["slots"])
        self.keys = nn.Parameter(torch.randn(slots, self.features) * 0.1)
        self.values = nn.Parameter(torch.randn(slots, self.features) * 0.1)
        self.gate = nn.Linear(2 * self.features, self.features)

    def forward(self, x: Tensor) -> Tensor:
        tokens = to_tokens(x, self.kind)
        weights = F.softmax(tokens @ self.keys.t() / math.sqrt(self.features), dim=-1)
        read = weights @ self.values
        gate = torch.sigmoid(self.gate(torch.cat([tokens, read], dim=-1)))
        return from_tokens(tokens + gate * read, x, self.kind)


class NeuralOdeBlock(Template):
    """dh/dt = f(h) integrated over t ∈ [0, 1] with fixed-step RK4."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        self.steps = int(p["steps"])
        self.field = MLP(self.features, int(p["hidden"]), nn.Tanh)

    def forward(self, x: Tensor) -> Tensor:
        h = to_tokens(x, self.kind)
        dt = 1.0 / self.steps
        for _ in range(self.steps):
            k1 = self.field(h)
            k2 = self.field(h + 0.5 * dt * k1)
            k3 = self.field(h + 0.5 * dt * k2)
            k4 = self.field(h + dt * k3)
            h = h + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        return from_tokens(h, x, self.kind)


class DifferentiableNas(Template):
    """DARTS mixed operation: a softmax over architecture weights mixes candidate operations."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        hidden = int(p["hidden"])
        self.linear = nn.Linear(self.features, self.features)
        self.mlp = MLP(self.features, hidden)
        self.conv = conv_nd(kind, self.features, self.features, 3, padding=1)
        self.architecture = nn.Parameter(torch.zeros(4))

    def forward(self, x: Tensor) -> Tensor:
        tokens = to_tokens(x, self.kind)
        weights = F.softmax(self.architecture, dim=0)
        candidates = [
            x,
            from_tokens(self.linear(tokens), x, self.kind),
            from_tokens(self.mlp(tokens), x, self.kind),
            from_channels(self.conv(to_channels(x, self.kind)), self.kind),
        ]
        out = torch.zeros_like(x)
        for index, candidate in enumerate(candidates):
            out = out + weights[index] * candidate
        return out


class MetaLearningLayer(Template):
    """Fast weights: a Hebbian update from the batch itself adapts the projection before it is applied."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        self.inner_rate = float(p["inner_rate"])
        self.slow = nn.Linear(self.features, self.features)
        self.key = nn.Linear(self.features, int(p["hidden"]))
        self.value = nn.Linear(self.features, int(p["hidden"]))

    def forward(self, x: Tensor) -> Tensor:
        tokens = to_tokens(x, self.kind)
        keys, values = torch.tanh(self.key(tokens)), torch.tanh(self.value(tokens))
        fast = keys.transpose(1, 2) @ values / tokens.shape[1]  # [N, hidden, hidden], per sample
        adapted = torch.tanh(keys + self.inner_rate * keys @ fast)
        out = self.slow(tokens) + adapted @ self.value.weight
        return x + from_tokens(out, x, self.kind)


class RecursiveProcessing(Template):
    """One weight-tied block applied `depth` times."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        self.depth = int(p["depth"])
        self.norm = nn.LayerNorm(self.features)
        self.block = MLP(self.features, int(p["hidden"]))

    def forward(self, x: Tensor) -> Tensor:
        h = to_tokens(x, self.kind)
        for _ in range(self.depth):
            h = h + self.block(self.norm(h)) / self.depth
        return from_tokens(h, x, self.kind)
