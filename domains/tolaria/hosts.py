"""Host models with declared seed slots: cnn-lite for images, transformer-lite for sequences.

A slot is a point in the forward pass where Kasmina may graft a seed; the host calls the slot's module
there. Each host declares its slots as `SlotSpec(slot, kind, shape)` (shape per sample, without the batch
dimension) and builds the module of each slot with the `slot_factory` it is given: an empty slot is the
identity, and Kasmina supplies its own `SeedSlot` modules.

A user's own host is a `module:factory` entry: a callable taking a `HostSpec` and returning an
`nn.Module` with a `slot_specs` attribute (a sequence of SlotSpec) that calls `spec.slot_factory(s)`'s
modules at its slots.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from domains.tolaria.config import ConfigError
from domains.tolaria.data import resolve_factory
from domains.tolaria.datasets.splits import TOKEN_VOCABULARY
from leyline import pb


@dataclass(frozen=True)
class SlotSpec:
    slot: int
    kind: int  # pb.SlotKind
    shape: tuple[int, ...]  # per sample: (C, H, W) or (T, D)


class Unwidened(nn.Module):
    """An empty widening slot: `slot(tap, x)` returns x unchanged."""

    def forward(self, tap: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x


def identity_slot(spec: SlotSpec) -> nn.Module:
    """An empty (dormant) slot: the activation passes through unchanged."""
    return Unwidened() if spec.kind == pb.SLOT_KIND_WIDEN else nn.Identity()


SlotFactory = Callable[[SlotSpec], nn.Module]


@dataclass(frozen=True)
class HostSpec:
    input_shape: tuple[int, ...]
    num_classes: int
    options: Mapping[str, Any] = field(default_factory=dict)
    slot_factory: SlotFactory = identity_slot


def _options(spec: HostSpec, name: str, defaults: Mapping[str, int]) -> dict[str, int]:
    unknown = sorted(set(spec.options) - set(defaults))
    if unknown:
        raise ConfigError(f"host {name}: unknown option(s) {', '.join(unknown)}; known: {sorted(defaults)}")
    values = {key: int(spec.options.get(key, default)) for key, default in defaults.items()}
    if min(values.values()) < 1:
        raise ConfigError(f"host {name}: options must be positive integers, got {values}")
    return values


class CNNLite(nn.Module):
    """Two small conv stages and a linear head (~670 parameters by default on digits) with 3 conv2d slots
    and a widening slot (3): a seed there reads the image and adds its output to the logits, i.e. new
    conv1 (and conv2) channels with their own zero-initialised head weights; what conv1's few channels
    drop cannot come back through any graft on the host's own stream.

    Options: `channels1`, `channels2` (widths) and `kernel1`, `kernel2` (odd kernel sizes, default 3; a
    kernel of 1 makes a stage pointwise, without spatial context).
    """

    def __init__(self, spec: HostSpec) -> None:
        super().__init__()
        if len(spec.input_shape) != 3:
            raise ConfigError(f"host cnn-lite needs image inputs [C, H, W], got shape {spec.input_shape}")
        defaults = {"channels1": 4, "channels2": 8, "kernel1": 3, "kernel2": 3}
        opts = _options(spec, "cnn-lite", defaults)
        c_in, height, width = spec.input_shape
        c1, c2, k1, k2 = opts["channels1"], opts["channels2"], opts["kernel1"], opts["kernel2"]
        if k1 % 2 == 0 or k2 % 2 == 0:
            raise ConfigError(f"host cnn-lite: kernels must be odd (same-size convolutions), got {k1}, {k2}")
        self.conv1 = nn.Conv2d(c_in, c1, k1, padding=k1 // 2)
        self.conv2 = nn.Conv2d(c1, c2, k2, padding=k2 // 2)
        self.pool = nn.MaxPool2d(2)
        h2, w2 = height // 2, width // 2
        h4, w4 = h2 // 2, w2 // 2
        if h4 < 1 or w4 < 1:
            raise ConfigError(f"host cnn-lite needs images of at least 4×4, got {height}×{width}")
        self.slot_specs: tuple[SlotSpec, ...] = (
            SlotSpec(0, pb.SLOT_KIND_CONV2D, (c1, height, width)),
            SlotSpec(1, pb.SLOT_KIND_CONV2D, (c2, h2, w2)),
            SlotSpec(2, pb.SLOT_KIND_CONV2D, (c2, h4, w4)),
            # The widening joins the logits, not conv2's pre-activation. Net2Net's placement (16 new conv1
            # channels read by conv2 through zero 3×3 weights) lost on Fashion-MNIST (24 × 10k, grown arm,
            # seeds 0/1, test accuracy): 0.8849/0.8854 against 0.8990/0.8983 here, 0.8979/0.8945 beside it.
            # The loss is in growing, not in the shape: a static host with 20 conv1 channels (the same 5.6k
            # parameters) reached 0.8961/0.8946, the same widening grown alone 0.8870/0.8861.
            SlotSpec(3, pb.SLOT_KIND_WIDEN, (c_in, height, width, spec.num_classes)),
        )
        self.slots = nn.ModuleList(spec.slot_factory(s) for s in self.slot_specs)
        self.head = nn.Linear(c2 * h4 * w4, spec.num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.slots[0](torch.relu(self.conv1(image)))
        x = self.slots[1](torch.relu(self.conv2(self.pool(x))))
        x = self.slots[2](self.pool(x))
        return self.slots[3](image, self.head(x.flatten(1)))


class TransformerLite(nn.Module):
    """A one-block transformer encoder over a sequence, mean-pooled into a linear head; 3 sequence slots.

    Feature sequences [T, D] are embedded by a linear layer, token sequences [T] (integer bytes, see
    TOKEN_VOCABULARY) by an embedding table; image inputs [1, H, W] are read as H steps of W features.
    """

    def __init__(self, spec: HostSpec) -> None:
        super().__init__()
        shape = spec.input_shape
        if len(shape) == 3 and shape[0] == 1:
            shape = shape[1:]
        if len(shape) not in (1, 2):
            raise ConfigError(
                f"host transformer-lite needs sequences [T, D] or tokens [T], got shape {spec.input_shape}"
            )
        opts = _options(spec, "transformer-lite", {"dim": 16, "heads": 2, "hidden": 32})
        steps = shape[0]
        dim = opts["dim"]
        if dim % opts["heads"]:
            raise ConfigError(f"host transformer-lite: dim {dim} must be a multiple of heads {opts['heads']}")
        self.embed: nn.Module = (
            nn.Embedding(TOKEN_VOCABULARY, dim) if len(shape) == 1 else nn.Linear(shape[1], dim)
        )
        self.position = nn.Parameter(torch.zeros(steps, dim))
        self.attention = nn.MultiheadAttention(dim, opts["heads"], batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.feedforward = nn.Sequential(
            nn.Linear(dim, opts["hidden"]), nn.GELU(), nn.Linear(opts["hidden"], dim)
        )
        self.norm2 = nn.LayerNorm(dim)
        self.slot_specs: tuple[SlotSpec, ...] = tuple(
            SlotSpec(i, pb.SLOT_KIND_SEQUENCE, (steps, dim)) for i in range(3)
        )
        self.slots = nn.ModuleList(spec.slot_factory(s) for s in self.slot_specs)
        self.head = nn.Linear(dim, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.squeeze(1)
        h = self.slots[0](self.embed(x) + self.position)
        attended, _ = self.attention(h, h, h, need_weights=False)
        h = self.slots[1](self.norm1(h + attended))
        h = self.slots[2](self.norm2(h + self.feedforward(h)))
        return self.head(h.mean(dim=1))


HostFactory = Callable[[HostSpec], nn.Module]

BUILTIN_HOSTS: dict[str, HostFactory] = {"cnn-lite": CNNLite, "transformer-lite": TransformerLite}


def build_host(entry: str, spec: HostSpec) -> nn.Module:
    factory: HostFactory = resolve_factory(entry, BUILTIN_HOSTS, "host", ("spec",))
    model = factory(spec)
    specs: Sequence[SlotSpec] | None = getattr(model, "slot_specs", None)
    if not isinstance(model, nn.Module) or not specs or not all(isinstance(s, SlotSpec) for s in specs):
        raise ConfigError(f"host {entry!r} must return an nn.Module with a non-empty slot_specs of SlotSpec")
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
