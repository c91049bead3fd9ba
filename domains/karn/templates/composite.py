"""Safe templates BP015–BP035: separable and attention-based convolutions, attention, transformer blocks,
pyramids, dense and graph connections, positional embeddings."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from domains.karn.blocks import (
    CONV,
    MLP,
    SelfAttention,
    attention,
    broadcast_features,
    conv_nd,
    from_channels,
    from_tokens,
    global_pool,
    neighbourhood_mask,
    to_channels,
    to_tokens,
)
from domains.karn.templates.base import Params, Shape, Template


class DepthwiseSeparable(Template):
    """Depthwise (2r+1) convolution then a pointwise mix, residual."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        radius = int(p["radius"])
        hidden = self.features * int(p["multiplier"])
        self.depthwise = conv_nd(
            kind, self.features, hidden, 2 * radius + 1, padding=radius, groups=self.features
        )
        self.pointwise = conv_nd(kind, hidden, self.features, 1)

    def forward(self, x: Tensor) -> Tensor:
        channels = to_channels(x, self.kind)
        return x + from_channels(self.pointwise(F.gelu(self.depthwise(channels))), self.kind)


class SqueezeExcitation(Template):
    """Squeeze-and-excitation: pooled features → bottleneck MLP → sigmoid gate per feature."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        self.fc = MLP(self.features, int(p["hidden"]), nn.ReLU)

    def forward(self, x: Tensor) -> Tensor:
        scale = torch.sigmoid(self.fc(global_pool(x, self.kind)))
        return broadcast_features(scale, x, self.kind)


class ChannelAttention(Template):
    """CBAM-style channel attention: a shared MLP over average- and max-pooled summaries."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        self.fc = MLP(self.features, int(p["hidden"]), nn.ReLU)

    def forward(self, x: Tensor) -> Tensor:
        summary = self.fc(global_pool(x, self.kind, "avg")) + self.fc(global_pool(x, self.kind, "max"))
        return broadcast_features(torch.sigmoid(summary), x, self.kind)


class SpatialAttention(Template):
    """A per-position gate computed by a convolution over [mean, max] across features."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        radius = int(p["radius"])
        self.conv = conv_nd(kind, 2, 1, 2 * radius + 1, padding=radius)

    def forward(self, x: Tensor) -> Tensor:
        channels = to_channels(x, self.kind)
        stats = torch.cat([channels.mean(dim=1, keepdim=True), channels.amax(dim=1, keepdim=True)], dim=1)
        return from_channels(channels * torch.sigmoid(self.conv(stats)), self.kind)


class CrossAttention(Template):
    """Positions attend to a learned bank of memory tokens."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        inner = int(p["head_dim"])
        self.memory = nn.Parameter(torch.randn(int(p["memory"]), self.features) * 0.1)
        self.query = nn.Linear(self.features, inner)
        self.key = nn.Linear(self.features, inner)
        self.value = nn.Linear(self.features, inner)
        self.out = nn.Linear(inner, self.features)

    def forward(self, x: Tensor) -> Tensor:
        tokens = to_tokens(x, self.kind)
        memory = self.memory.unsqueeze(0).expand(tokens.shape[0], -1, -1)
        read = attention(self.query(tokens), self.key(memory), self.value(memory), heads=1)
        return x + from_tokens(self.out(read), x, self.kind)


class AttentionHeads(Template):
    """Residual multi-head self-attention; `heads` is fixed per blueprint."""

    heads = 1

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        self.attn = SelfAttention(self.features, self.heads, int(p["head_dim"]))

    def forward(self, x: Tensor) -> Tensor:
        return x + from_tokens(self.attn(to_tokens(x, self.kind)), x, self.kind)


class AttentionSingleHead(AttentionHeads):
    """Residual single-head self-attention over positions."""

    heads = 1


class MultiHeadAttention4(AttentionHeads):
    """Residual 4-head self-attention over positions."""

    heads = 4


class MultiHeadAttention8(AttentionHeads):
    """Residual 8-head self-attention over positions."""

    heads = 8


class FeedforwardGated(Template):
    """SwiGLU feed-forward: W3 (silu(W1 x) ⊙ W2 x), residual."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        hidden = int(p["hidden"])
        self.gate = nn.Linear(self.features, hidden)
        self.value = nn.Linear(self.features, hidden)
        self.out = nn.Linear(hidden, self.features)

    def forward(self, x: Tensor) -> Tensor:
        tokens = to_tokens(x, self.kind)
        out = self.out(F.silu(self.gate(tokens)) * self.value(tokens))
        return x + from_tokens(out, x, self.kind)


class TransformerBlock(Template):
    """Pre-norm block: x + MHA(LN x), then + FFN(LN x)."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        self.norm1 = nn.LayerNorm(self.features)
        self.attn = SelfAttention(self.features, 2, int(p["head_dim"]))
        self.norm2 = nn.LayerNorm(self.features)
        self.ffn = MLP(self.features, int(p["hidden"]))

    def forward(self, x: Tensor) -> Tensor:
        tokens = to_tokens(x, self.kind)
        tokens = tokens + self.attn(self.norm1(tokens))
        tokens = tokens + self.ffn(self.norm2(tokens))
        return from_tokens(tokens, x, self.kind)


class ConvTransformer(Template):
    """A local convolution followed by global self-attention over positions."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        self.local = conv_nd(kind, self.features, self.features, 3, padding=1, groups=self.features)
        self.norm = nn.LayerNorm(self.features)
        self.attn = SelfAttention(self.features, 1, int(p["head_dim"]))

    def forward(self, x: Tensor) -> Tensor:
        local = x + from_channels(self.local(to_channels(x, self.kind)), self.kind)
        tokens = to_tokens(local, self.kind)
        return from_tokens(tokens + self.attn(self.norm(tokens)), x, self.kind)


class DynamicConv(Template):
    """CondConv: K expert kernels mixed per sample by an attention over the pooled input."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        experts = int(p["experts"])
        self.experts = nn.ModuleList(
            conv_nd(kind, self.features, self.features, 3, padding=1) for _ in range(experts)
        )
        self.router = nn.Linear(self.features, experts)

    def forward(self, x: Tensor) -> Tensor:
        weights = F.softmax(self.router(global_pool(x, self.kind)), dim=-1)
        channels = to_channels(x, self.kind)
        mixed = torch.zeros_like(channels)
        for index, expert in enumerate(self.experts):
            weight = weights[:, index].reshape([-1] + [1] * (channels.dim() - 1))
            mixed = mixed + weight * expert(channels)
        return x + from_channels(mixed, self.kind)


class AdaptivePooling(Template):
    """Pool to a fixed coarse grid, project, and upsample back to the slot's size."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        size = int(p["size"])
        if kind == CONV:
            self.pool: nn.Module = nn.AdaptiveAvgPool2d(size)
            self.target: tuple[int, ...] = (shape[1], shape[2])
        else:
            self.pool = nn.AdaptiveAvgPool1d(size)
            self.target = (shape[0],)
        self.mix = conv_nd(kind, self.features, self.features, 1)

    def forward(self, x: Tensor) -> Tensor:
        coarse = self.mix(self.pool(to_channels(x, self.kind)))
        return x + from_channels(F.interpolate(coarse, size=self.target, mode="nearest"), self.kind)


class FeaturePyramid(Template):
    """Features at 1, 1/2, 1/4 … resolution, each projected, upsampled and summed."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        self.target: tuple[int, ...] = (shape[1], shape[2]) if kind == CONV else (shape[0],)
        self.sizes = [
            tuple(max(1, math.ceil(s / 2**level)) for s in self.target) for level in range(int(p["levels"]))
        ]
        self.projections = nn.ModuleList(conv_nd(kind, self.features, self.features, 1) for _ in self.sizes)

    def forward(self, x: Tensor) -> Tensor:
        channels = to_channels(x, self.kind)
        total = torch.zeros_like(channels)
        for size, projection in zip(self.sizes, self.projections, strict=True):
            if self.kind == CONV:
                level = F.adaptive_avg_pool2d(channels, size)
            else:
                level = F.adaptive_avg_pool1d(channels, size)
            total = total + F.interpolate(projection(level), size=self.target, mode="nearest")
        return x + from_channels(total, self.kind)


class DenseConnection(Template):
    """DenseNet-style: each layer sees the concatenation of everything before it."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        growth, layers = int(p["growth"]), int(p["layers"])
        self.layers = nn.ModuleList(
            nn.Linear(self.features + index * growth, growth) for index in range(layers)
        )
        self.out = nn.Linear(self.features + layers * growth, self.features)

    def forward(self, x: Tensor) -> Tensor:
        state = to_tokens(x, self.kind)
        for layer in self.layers:
            state = torch.cat([state, F.relu(layer(state))], dim=-1)
        return from_tokens(self.out(state), x, self.kind)


class GraphAttention(Template):
    """GAT over the slot's neighbourhood graph (grid cells or nearby time steps), one head."""

    adjacency: Tensor

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        hidden = int(p["hidden"])
        self.project = nn.Linear(self.features, hidden, bias=False)
        self.source_score = nn.Parameter(torch.randn(hidden) * 0.1)
        self.target_score = nn.Parameter(torch.randn(hidden) * 0.1)
        self.out = nn.Linear(hidden, self.features)
        self.register_buffer("adjacency", neighbourhood_mask(kind, shape, int(p["radius"])))

    def forward(self, x: Tensor) -> Tensor:
        h = self.project(to_tokens(x, self.kind))
        scores = (h @ self.target_score)[:, :, None] + (h @ self.source_score)[:, None, :]
        scores = F.leaky_relu(scores, 0.2).masked_fill(~self.adjacency, float("-inf"))
        messages = F.softmax(scores, dim=-1) @ h
        return x + from_tokens(self.out(F.elu(messages)), x, self.kind)


class TemporalConv(Template):
    """Causal convolution over time (left padding only), residual."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        self.kernel = int(p["kernel"])
        hidden = self.features * int(p["multiplier"])
        self.conv = nn.Conv1d(self.features, hidden, self.kernel)
        self.mix = nn.Conv1d(hidden, self.features, 1)

    def forward(self, x: Tensor) -> Tensor:
        channels = F.pad(x.transpose(1, 2), (self.kernel - 1, 0))
        return x + self.mix(F.gelu(self.conv(channels))).transpose(1, 2)


class DilatedConv(Template):
    """A dilated 3×3 (or 3-step) convolution: a wider receptive field at the same cost, residual."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        dilation = int(p["dilation"])
        self.conv = conv_nd(kind, self.features, self.features, 3, padding=dilation, dilation=dilation)

    def forward(self, x: Tensor) -> Tensor:
        return x + from_channels(F.gelu(self.conv(to_channels(x, self.kind))), self.kind)


class DeformableConv(Template):
    """Deformable 3×3 convolution: learned per-position offsets, bilinear sampling, then a 1×1 mix."""

    base: Tensor
    taps: Tensor
    step: Tensor

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        h, w = shape[1], shape[2]
        self.offset_scale = float(p["offset_scale"])
        self.offsets = nn.Conv2d(self.features, 18, 3, padding=1, bias=False)
        nn.init.zeros_(self.offsets.weight)
        self.weights = nn.Conv2d(self.features * 9, self.features, 1)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        self.register_buffer("base", torch.stack([xs, ys], dim=-1))
        taps = torch.tensor([(dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], dtype=torch.float32)
        step = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)])
        self.register_buffer("taps", taps * step)
        self.register_buffer("step", step)

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        offsets = self.offsets(x).reshape(n, 9, 2, h, w).permute(0, 1, 3, 4, 2)
        samples = []
        for tap in range(9):
            grid = self.base + self.taps[tap] + torch.tanh(offsets[:, tap]) * self.step * self.offset_scale
            samples.append(F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True))
        return x + self.weights(torch.cat(samples, dim=1))


class NonLocalBlock(Template):
    """Embedded-Gaussian non-local block: every position attends to every other."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        inner = int(p["inner"])
        self.theta = nn.Linear(self.features, inner)
        self.phi = nn.Linear(self.features, inner)
        self.g = nn.Linear(self.features, inner)
        self.out = nn.Linear(inner, self.features)

    def forward(self, x: Tensor) -> Tensor:
        tokens = to_tokens(x, self.kind)
        read = attention(self.theta(tokens), self.phi(tokens), self.g(tokens), heads=1)
        return x + from_tokens(self.out(read), x, self.kind)


class LearnedPositional(Template):
    """Adds a learned embedding per position (and feature)."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__(kind, shape)
        self.embedding = nn.Parameter(torch.randn(*shape) * float(p["init_std"]))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.embedding
