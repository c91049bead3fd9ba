"""The torch modules behind Karn's 50 blueprints (SPEC §9).

Every template is built as `Template(kind, shape, params)` where kind is a leyline SlotKind, shape the
slot's shape without the batch dimension ([C, H, W] or [T, D]) and params the validated parameters; its
forward maps a batch of that shape to an output of the same shape. Integer parameters arrive as floats
and are converted here. Faults that are side effects rather than tensor computation (busy waits,
retained memory, lock inversion, unsynchronised threads) live in domains/karn/faults.py.

Longer than our ~400-line rule on purpose: one short module class per blueprint, 50 in all, in catalogue
order under their tier's heading; the shared building blocks are in blocks.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

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
    features_of,
    from_channels,
    from_tokens,
    global_pool,
    neighbourhood_mask,
    positions_of,
    to_channels,
    to_tokens,
    window_mask,
)

Params = Mapping[str, float]
Shape = tuple[int, ...]


class Template(nn.Module):
    """Base of every template: remembers the slot it was built for."""

    def __init__(self, kind: int, shape: Shape) -> None:
        super().__init__()
        self.kind = kind
        self.shape = shape
        self.features = features_of(kind, shape)
        self.positions = positions_of(kind, shape)


# ---------------------------------------------------------------- safe: BP001–BP035


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


# ---------------------------------------------------------------- experimental: BP036–BP042


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


# ---------------------------------------------------------------- adversarial: BP043–BP050


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
