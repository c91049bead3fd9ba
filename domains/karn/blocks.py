"""Shape helpers shared by Karn's templates.

A slot is either conv feature maps [N, C, H, W], sequence features [N, T, D] or a widening (a tap
[N, C, H, W] that the seed reads, and an output [N, K] added to a later pre-activation: slot shape
[C, H, W, K]). Many templates work on
"tokens" [N, L, F] (F features per position): a feature map becomes L = H·W tokens of C features, a
sequence is already tokens. The batch dimension N stays symbolic so one exported artifact serves any
batch size.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from leyline import pb

CONV = pb.SLOT_KIND_CONV2D
SEQUENCE = pb.SLOT_KIND_SEQUENCE
WIDEN = pb.SLOT_KIND_WIDEN
SLOT_RANKS: dict[int, int] = {CONV: 3, SEQUENCE: 2, WIDEN: 4}  # [C, H, W], [T, D], [C, H, W, K]
SLOT_LAYOUTS: dict[int, str] = {CONV: "[C, H, W]", SEQUENCE: "[T, D]", WIDEN: "[C, H, W, K]"}


def slot_io(kind: int, shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A slot's input and output shape per sample: a conv or sequence slot maps its shape to itself, a
    widening slot reads its tap [C, H, W] and writes [K]."""
    if kind == WIDEN:
        return shape[:3], shape[3:]
    return shape, shape


def features_of(kind: int, shape: tuple[int, ...]) -> int:
    """Feature width of a slot: C for [C, H, W] (a widening's tap too), D for [T, D] (shapes exclude the
    batch dimension)."""
    return shape[1] if kind == SEQUENCE else shape[0]


def positions_of(kind: int, shape: tuple[int, ...]) -> int:
    return shape[0] if kind == SEQUENCE else shape[1] * shape[2]


def to_tokens(x: Tensor, kind: int) -> Tensor:
    if kind == CONV:
        return x.flatten(2).transpose(1, 2)
    return x


def from_tokens(tokens: Tensor, like: Tensor, kind: int) -> Tensor:
    if kind == CONV:
        return tokens.transpose(1, 2).reshape(like.shape)
    return tokens


def to_channels(x: Tensor, kind: int) -> Tensor:
    """[N, F, …spatial]: conv maps as they are, sequences as [N, D, T] for 1-d convolutions."""
    return x if kind == CONV else x.transpose(1, 2)


def from_channels(y: Tensor, kind: int) -> Tensor:
    return y if kind == CONV else y.transpose(1, 2)


def conv_nd(
    kind: int, cin: int, cout: int, kernel: int, padding: int = 0, dilation: int = 1, groups: int = 1
) -> nn.Module:
    """A 2-d convolution for feature maps, a 1-d one (over T) for sequences."""
    if kind == CONV:
        return nn.Conv2d(cin, cout, kernel, padding=padding, dilation=dilation, groups=groups)
    return nn.Conv1d(cin, cout, kernel, padding=padding, dilation=dilation, groups=groups)


def global_pool(x: Tensor, kind: int, mode: str = "avg") -> Tensor:
    """[N, F] summary over all positions."""
    tokens = to_tokens(x, kind)
    return tokens.mean(dim=1) if mode == "avg" else tokens.amax(dim=1)


def broadcast_features(scale: Tensor, x: Tensor, kind: int) -> Tensor:
    """Multiply x by a per-sample, per-feature [N, F] tensor."""
    if kind == CONV:
        return x * scale[:, :, None, None]
    return x * scale[:, None, :]


def attention(q: Tensor, k: Tensor, v: Tensor, heads: int, mask: Tensor | None = None) -> Tensor:
    """Scaled dot-product attention over [N, L, heads·d] projections; returns [N, Lq, heads·d]."""
    n, lq, width = q.shape
    d = width // heads
    qh = q.reshape(n, lq, heads, d).transpose(1, 2)
    kh = k.reshape(n, k.shape[1], heads, d).transpose(1, 2)
    vh = v.reshape(n, v.shape[1], heads, d).transpose(1, 2)
    scores = qh @ kh.transpose(-2, -1) / math.sqrt(d)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    out = F.softmax(scores, dim=-1) @ vh
    return out.transpose(1, 2).reshape(n, lq, width)


class SelfAttention(nn.Module):
    """Multi-head self-attention on tokens with its own projections."""

    def __init__(self, features: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads = heads
        inner = heads * head_dim
        self.qkv = nn.Linear(features, 3 * inner)
        self.out = nn.Linear(inner, features)

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)
        return self.out(attention(q, k, v, self.heads, mask))


class MLP(nn.Module):
    def __init__(self, features: int, hidden: int, activation: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features, hidden), activation(), nn.Linear(hidden, features))

    def forward(self, tokens: Tensor) -> Tensor:
        result: Tensor = self.net(tokens)
        return result


def neighbourhood_mask(kind: int, shape: tuple[int, ...], radius: int) -> Tensor:
    """[L, L] boolean adjacency: grid cells within Chebyshev distance radius, or positions within radius."""
    if kind == CONV:
        h, w = shape[1], shape[2]
        rows = torch.arange(h).repeat_interleave(w)
        cols = torch.arange(w).repeat(h)
        near_rows = (rows[:, None] - rows[None, :]).abs() <= radius
        near_cols = (cols[:, None] - cols[None, :]).abs() <= radius
        return near_rows & near_cols
    steps = torch.arange(shape[0])
    return (steps[:, None] - steps[None, :]).abs() <= radius


def window_mask(length: int, window: int) -> Tensor:
    """[L, L] boolean: positions in the same block of `window` consecutive positions."""
    block = torch.arange(length) // window
    return block[:, None] == block[None, :]
