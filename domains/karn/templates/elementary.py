"""Safe templates BP001–BP014: identity, projections, norms, activations, pooling, residual and gated
blocks."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from domains.karn.blocks import (
    CONV,
    MLP,
    conv_nd,
    from_channels,
    from_tokens,
    to_channels,
    to_tokens,
)
from domains.karn.templates.base import Params, Shape, Template


class IdentityPassthrough(Template):
    """Returns its input unchanged (no parameters): the null seed."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)

    def forward(self, x: Tensor) -> Tensor:
        return x.clone()


class LinearProjection(Template):
    """A low-rank linear map of the features (F → hidden → F)."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        self.down = nn.Linear(self.features, int(p["hidden"]))
        self.up = nn.Linear(int(p["hidden"]), self.features)

    def forward(self, x: Tensor) -> Tensor:
        return from_tokens(self.up(self.down(to_tokens(x, self.kind))), x, self.kind)


class LayerNormBasic(Template):
    """Layer normalisation over the features of each position, with a learned affine."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        self.norm = nn.LayerNorm(self.features, eps=p["eps"])

    def forward(self, x: Tensor) -> Tensor:
        return from_tokens(self.norm(to_tokens(x, self.kind)), x, self.kind)


class DropoutLight(Template):
    """Dropout then a learned per-feature scale; dropout is active in training mode only."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        self.dropout = nn.Dropout(p["p"])
        self.scale = nn.Parameter(torch.ones(self.features))

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.dropout(to_tokens(x, self.kind)) * self.scale
        return from_tokens(tokens, x, self.kind)


class ReluActivation(Template):
    """x + W2 relu(W1 x): a residual ReLU MLP over the features."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        self.mlp = MLP(self.features, int(p["hidden"]), nn.ReLU)

    def forward(self, x: Tensor) -> Tensor:
        return x + from_tokens(self.mlp(to_tokens(x, self.kind)), x, self.kind)


class BatchNorm1d(Template):
    """Batch normalisation of each feature over batch and positions (running statistics in eval)."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        self.norm = nn.BatchNorm1d(self.features, momentum=p["momentum"])

    def forward(self, x: Tensor) -> Tensor:
        channels = to_channels(x, self.kind)
        flat = channels.reshape(channels.shape[0], self.features, -1)
        return from_channels(self.norm(flat).reshape(channels.shape), self.kind)


class PoolingMax(Template):
    """Max pooling over a (2r+1) neighbourhood, stride 1, mixed back by a 1×1 projection."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        radius = int(p["radius"])
        size = 2 * radius + 1
        if kind == CONV:
            self.pool: nn.Module = nn.MaxPool2d(size, stride=1, padding=radius)
        else:
            self.pool = nn.MaxPool1d(size, stride=1, padding=radius)
        self.mix = conv_nd(kind, self.features, self.features, 1)

    def forward(self, x: Tensor) -> Tensor:
        return from_channels(self.mix(self.pool(to_channels(x, self.kind))), self.kind)


class SkipConnection(Template):
    """x + a·W x with a learned scalar a."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        self.proj = nn.Linear(self.features, self.features)
        self.alpha = nn.Parameter(torch.tensor(float(p["init_scale"])))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.alpha * from_tokens(self.proj(to_tokens(x, self.kind)), x, self.kind)


class ResidualBlock(Template):
    """x + conv(relu(conv(x))) with 3×3 (or 3-step) kernels. The second convolution starts at zero, so the
    block starts as the identity: grafted in, it changes nothing until it has learned a residual worth
    blending (a random residual is a perturbation the host must first unlearn). Its input convolution
    keeps its random start, so gradient reaches it as soon as the output weights move."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        hidden = int(p["hidden"])
        self.first = conv_nd(kind, self.features, hidden, 3, padding=1)
        self.second = conv_nd(kind, hidden, self.features, 3, padding=1)
        for tensor in self.second.parameters():
            nn.init.zeros_(tensor)

    def forward(self, x: Tensor) -> Tensor:
        channels = to_channels(x, self.kind)
        return x + from_channels(self.second(F.relu(self.first(channels))), self.kind)


class ConcatFusion(Template):
    """Concatenate x with a transformed copy, fuse back to F features."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        hidden = int(p["hidden"])
        self.branch = nn.Linear(self.features, hidden)
        self.fuse = nn.Linear(self.features + hidden, self.features)

    def forward(self, x: Tensor) -> Tensor:
        tokens = to_tokens(x, self.kind)
        fused = self.fuse(torch.cat([tokens, F.relu(self.branch(tokens))], dim=-1))
        return from_tokens(fused, x, self.kind)


class GeluActivation(Template):
    """x + W2 gelu(W1 x): a residual GELU MLP over the features."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        self.mlp = MLP(self.features, int(p["hidden"]), nn.GELU)

    def forward(self, x: Tensor) -> Tensor:
        return x + from_tokens(self.mlp(to_tokens(x, self.kind)), x, self.kind)


class LayerScaling(Template):
    """Per-feature affine scale (LayerScale): gamma ⊙ x + beta."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        self.gamma = nn.Parameter(torch.full((self.features,), float(p["init_scale"])))
        self.beta = nn.Parameter(torch.zeros(self.features))

    def forward(self, x: Tensor) -> Tensor:
        return from_tokens(to_tokens(x, self.kind) * self.gamma + self.beta, x, self.kind)


def _divisor_at_most(value: int, limit: int) -> int:
    """The largest divisor of value that is ≤ limit (group counts must divide the channels)."""
    return max(d for d in range(1, min(value, limit) + 1) if value % d == 0)


class GroupedConv(Template):
    """A grouped 3×3 (or 3-step) convolution widening by `multiplier`, mixed back by a 1×1, residual."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        groups = _divisor_at_most(self.features, int(p["groups"]))
        hidden = self.features * int(p["multiplier"])
        self.grouped = conv_nd(kind, self.features, hidden, 3, padding=1, groups=groups)
        self.mix = conv_nd(kind, hidden, self.features, 1)

    def forward(self, x: Tensor) -> Tensor:
        channels = to_channels(x, self.kind)
        return x + from_channels(self.mix(F.gelu(self.grouped(channels))), self.kind)


class HighwayGate(Template):
    """t·H(x) + (1 − t)·x with a learned transform gate t (bias starts negative: carry by default)."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        self.transform = nn.Linear(self.features, self.features)
        self.gate = nn.Linear(self.features, self.features)
        nn.init.constant_(self.gate.bias, float(p["gate_bias"]))

    def forward(self, x: Tensor) -> Tensor:
        tokens = to_tokens(x, self.kind)
        gate = torch.sigmoid(self.gate(tokens))
        out = gate * F.relu(self.transform(tokens)) + (1 - gate) * tokens
        return from_tokens(out, x, self.kind)
