"""The base every template derives from, and the types of a template's shape and parameters."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from domains.karn.blocks import features_of, positions_of

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
