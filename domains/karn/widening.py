"""The torch modules behind Karn's widening blueprints (BP051, BP052), for widening slots only.

A widening slot (leyline SLOT_KIND_WIDEN, shape [C, H, W, K]) lets a seed add units beside a host layer,
as Net2Net widens one: the seed reads the layer's input (the tap, [N, C, H, W]) through new units of its
own, and its output [N, K] is added to a later pre-activation (on cnn-lite, the logits) through a
consumer layer initialised to zero. At graft the seed's output is exactly zero, so the host's output is
bit-identical; from the first step the consumer gets gradient (the new units' features times the
gradient at the pre-activation), and the new units get theirs once the consumer is off zero.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from domains.karn.blocks import WIDEN
from domains.karn.templates.base import Params, Shape


def _check(kind: int, shape: Shape) -> tuple[int, int, int, int]:
    if kind != WIDEN or len(shape) != 4:
        raise ValueError(f"a widening template needs a widening slot [C, H, W, K], got kind {kind} {shape}")
    return shape[0], shape[1], shape[2], shape[3]


def _consumer(features: int, out: int) -> nn.Linear:
    """The new input weights of the later layer: zero, so the widening changes nothing at graft."""
    layer = nn.Linear(features, out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _pooled(size: int) -> int:
    return size // 2 if size >= 2 else size


def _pool(size: int) -> nn.Module:
    return nn.MaxPool2d(2) if size >= 2 else nn.Identity()


class WidenConv(nn.Module):
    """`channels` new 3×3 conv units on the tap (ReLU), max-pooled 4× (two 2× pools, as cnn-lite's stages
    pool) and read by a zero-initialised linear layer into the output: on cnn-lite (tap: the image),
    conv1 and the head widened by `channels`."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__()
        features, height, width, out = _check(kind, shape)
        channels = int(p["channels"])
        self.conv = nn.Conv2d(features, channels, 3, padding=1)
        h1, w1 = _pooled(height), _pooled(width)
        self.pool = nn.Sequential(_pool(min(height, width)), _pool(min(h1, w1)))
        self.read = _consumer(channels * _pooled(h1) * _pooled(w1), out)

    def forward(self, x: Tensor) -> Tensor:
        result: Tensor = self.read(self.pool(F.relu(self.conv(x))).flatten(1))
        return result


class WidenDeep(nn.Module):
    """Two stages of `channels` new 3×3 conv units on the tap (each ReLU, 2×2 max pool), read by a
    zero-initialised linear layer into the output: on cnn-lite (tap: the image), conv1, conv2 and the
    head widened by `channels`, a column beside the host's own."""

    def __init__(self, kind: int, shape: Shape, p: Params) -> None:
        super().__init__()
        features, height, width, out = _check(kind, shape)
        channels = int(p["channels"])
        self.first = nn.Conv2d(features, channels, 3, padding=1)
        self.second = nn.Conv2d(channels, channels, 3, padding=1)
        self.pool1 = _pool(min(height, width))
        h1, w1 = _pooled(height), _pooled(width)
        self.pool2 = _pool(min(h1, w1))
        self.read = _consumer(channels * _pooled(h1) * _pooled(w1), out)

    def forward(self, x: Tensor) -> Tensor:
        h = self.pool1(F.relu(self.first(x)))
        result: Tensor = self.read(self.pool2(F.relu(self.second(h))).flatten(1))
        return result
