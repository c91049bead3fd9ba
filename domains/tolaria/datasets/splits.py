"""The value every data set hands the trainer: three fixed splits held as tensors.

`train` and `validation` are what the run learns and decides on; `test` is read once, at the final
evaluation. Image inputs are float tensors [N, C, H, W], feature sequences [N, T, D], token sequences
integer tensors [N, T] of byte values (vocabulary TOKEN_VOCABULARY).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

TOKEN_VOCABULARY = 256  # token sequences are bytes


class DataUnavailable(Exception):
    """The data a run names is missing or not what it should be; the message says what to install or pass."""


@dataclass(frozen=True)
class Split:
    inputs: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def to(self, device: torch.device) -> Split:
        return Split(self.inputs.to(device), self.targets.to(device))

    def head(self, count: int) -> Split:
        return Split(self.inputs[:count], self.targets[:count])


@dataclass(frozen=True)
class Splits:
    name: str
    train: Split
    validation: Split
    test: Split
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.inputs.shape[1:])

    def to(self, device: torch.device) -> Splits:
        return Splits(
            self.name,
            self.train.to(device),
            self.validation.to(device),
            self.test.to(device),
            self.num_classes,
        )

    def limit_train(self, count: int) -> Splits:
        """The first `count` training examples (already shuffled); validation and test unchanged."""
        return replace(self, train=self.train.head(count))
