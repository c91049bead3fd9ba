"""Data for the trainer: scikit-learn's bundled digits, synthetic generators, user plug-ins; batch order.

A data set is three fixed splits held as tensors (everything here is small). The split is fixed by the run
seed. A user's own data is a `module:factory` callable taking `(seed: int, options: dict)` and returning a
`Splits`. The order of training batches is a pure function of (seed, epoch), so the data-order cursor of
a checkpoint is just the epoch and the batch to start from.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from domains.tolaria.config import ConfigError


@dataclass(frozen=True)
class Split:
    inputs: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def to(self, device: torch.device) -> Split:
        return Split(self.inputs.to(device), self.targets.to(device))


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


def _split(
    inputs: np.ndarray,
    targets: np.ndarray,
    seed: int,
    name: str,
    num_classes: int,
    test_fraction: float = 0.2,
) -> Splits:
    """test_fraction (default 20 %) / 10 % validation / the rest training, shuffled by the seed."""
    order = np.random.default_rng(seed).permutation(len(targets))
    n_test = int(len(targets) * test_fraction)
    n_val = len(targets) // 10
    x = torch.from_numpy(np.ascontiguousarray(inputs[order], dtype=np.float32))
    y = torch.from_numpy(np.ascontiguousarray(targets[order], dtype=np.int64))
    test = Split(x[:n_test], y[:n_test])
    validation = Split(x[n_test : n_test + n_val], y[n_test : n_test + n_val])
    train = Split(x[n_test + n_val :], y[n_test + n_val :])
    return Splits(name, train, validation, test, num_classes)


def digits(seed: int, options: Mapping[str, Any]) -> Splits:
    """scikit-learn's bundled 1,797 8×8 digit images as [N, 1, 8, 8] in [0, 1]; no download.

    Options: `split_seed` shuffles the split instead of the run seed (runs of different seeds on the same
    data), `test_fraction` (default 0.2, at most 0.6) sizes the test split.
    """
    from sklearn.datasets import load_digits

    unknown = sorted(set(options) - {"split_seed", "test_fraction"})
    if unknown:
        raise ConfigError(
            f"dataset digits: unknown option(s) {', '.join(unknown)}; known: split_seed, test_fraction"
        )
    split_seed = int(options.get("split_seed", seed))
    test_fraction = float(options.get("test_fraction", 0.2))
    if split_seed < 0 or not 0.05 <= test_fraction <= 0.6:
        raise ConfigError("dataset digits: split_seed must be >= 0 and test_fraction within [0.05, 0.6]")
    bunch = load_digits()
    images = (bunch.images / 16.0).reshape(-1, 1, 8, 8)
    return _split(images, bunch.target, split_seed, "digits", 10, test_fraction)


def _synthetic(seed: int, options: Mapping[str, Any], shape: tuple[int, ...], name: str) -> Splits:
    known = {"samples", "classes", "noise"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"dataset {name}: unknown option(s) {', '.join(unknown)}; known: {sorted(known)}")
    samples = int(options.get("samples", 512))
    classes = int(options.get("classes", 4))
    noise = float(options.get("noise", 0.5))
    if samples < 10 * classes or classes < 2:
        raise ConfigError(f"dataset {name}: need classes >= 2 and samples >= 10 × classes")
    rng = np.random.default_rng(seed + 1)
    prototypes = rng.normal(size=(classes, *shape))
    targets = rng.integers(0, classes, size=samples)
    inputs = prototypes[targets] + noise * rng.normal(size=(samples, *shape))
    return _split(inputs, targets, seed, name, classes)


def synthetic_images(seed: int, options: Mapping[str, Any]) -> Splits:
    """Class prototypes plus Gaussian noise, [N, 1, 8, 8]: a quick, learnable set for tests."""
    return _synthetic(seed, options, (1, 8, 8), "synthetic-images")


def synthetic_sequences(seed: int, options: Mapping[str, Any]) -> Splits:
    """Class prototypes plus Gaussian noise, [N, 8, 8] (8 steps of 8 features)."""
    return _synthetic(seed, options, (8, 8), "synthetic-sequences")


DataFactory = Callable[[int, Mapping[str, Any]], Splits]

BUILTIN_DATASETS: dict[str, DataFactory] = {
    "digits": digits,
    "synthetic-images": synthetic_images,
    "synthetic-sequences": synthetic_sequences,
}


def resolve_factory(entry: str, builtins: Mapping[str, Any], what: str, parameters: tuple[str, ...]) -> Any:
    """A built-in by name, or the object a `module:attribute` entry names, callable with `parameters`."""
    if entry in builtins:
        return builtins[entry]
    module_name, sep, attribute = entry.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"unknown {what} {entry!r}; use one of {', '.join(builtins)} or module:factory")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except ImportError as exc:
        raise ConfigError(f"{what} {entry!r}: cannot import {module_name} ({exc})") from None
    except AttributeError:
        raise ConfigError(f"{what} {entry!r}: {module_name} has no attribute {attribute}") from None
    if not callable(factory):
        raise ConfigError(f"{what} {entry!r} is not callable")
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # no signature to check (a builtin): the call will tell
        return factory
    try:
        signature.bind(*parameters)
    except TypeError:
        expected = ", ".join(parameters)
        raise ConfigError(f"{what} {entry!r} must take ({expected}); its signature is {signature}") from None
    return factory


def load_dataset(entry: str, seed: int, options: Mapping[str, Any]) -> Splits:
    factory: DataFactory = resolve_factory(entry, BUILTIN_DATASETS, "dataset", ("seed", "options"))
    splits = factory(seed, dict(options))
    if not isinstance(splits, Splits):
        raise ConfigError(f"dataset {entry!r} returned {type(splits).__name__}, not a tolaria.data.Splits")
    return splits


def epoch_order(seed: int, epoch: int, size: int) -> torch.Tensor:
    """The permutation of training samples for an epoch: a pure function of (seed, epoch)."""
    digest = hashlib.sha256(f"order/{seed}/{epoch}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    return torch.randperm(size, generator=generator)


def batches(split: Split, order: torch.Tensor, batch_size: int, start: int = 0) -> Iterator[Split]:
    """Training batches in `order` from batch number `start` (the data-order cursor)."""
    order = order.to(split.inputs.device)
    for offset in range(start * batch_size, len(order), batch_size):
        index = order[offset : offset + batch_size]
        yield Split(split.inputs[index], split.targets[index])


def eval_batches(split: Split, batch_size: int) -> Iterator[Split]:
    for offset in range(0, len(split), batch_size):
        yield Split(split.inputs[offset : offset + batch_size], split.targets[offset : offset + batch_size])
