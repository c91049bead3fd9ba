"""Data for the trainer: bundled digits, installed real data, synthetic sets, user plug-ins; batch order.

A data set is three fixed splits held as tensors (domains/tolaria/datasets/splits.py); the split is fixed
by the run seed unless the data set takes a `split_seed`. The option `train_limit` (every data set) keeps
the first N training examples. A user's own data is a `module:factory` callable taking `(seed: int,
options: dict)` and returning a `Splits`. The order of training batches is a pure function of (seed,
epoch), so the data-order cursor of a checkpoint is just the epoch and the batch to start from; the run
option `epoch_examples` makes an epoch that many examples drawn afresh from the whole training split.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import importlib.util
import inspect
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from domains.tolaria.config import ConfigError
from domains.tolaria.datasets.austen import austen
from domains.tolaria.datasets.idx import IDX_DATASETS, fashion_mnist, mnist
from domains.tolaria.datasets.splits import DataUnavailable, Split, Splits


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
    unknown = sorted(set(options) - {"split_seed", "test_fraction"})
    if unknown:
        raise ConfigError(
            f"dataset digits: unknown option(s) {', '.join(unknown)}; known: split_seed, test_fraction"
        )
    split_seed = int(options.get("split_seed", seed))
    test_fraction = float(options.get("test_fraction", 0.2))
    if split_seed < 0 or not 0.05 <= test_fraction <= 0.6:
        raise ConfigError("dataset digits: split_seed must be >= 0 and test_fraction within [0.05, 0.6]")
    images, targets = _digits_arrays()
    return _split(images / 16.0, targets, split_seed, "digits", 10, test_fraction)


DIGITS_SHAPE = (1797, 65)  # 64 pixel values 0–16 and the label, per row


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits file read as `load_digits` reads it, without importing scikit-learn (whose
    import takes seconds, longer than a whole default run's training). Images [N, 1, 8, 8], labels [N]."""
    spec = importlib.util.find_spec("sklearn")
    locations = list(spec.submodule_search_locations or ()) if spec is not None else []
    path = next((Path(p) / "datasets" / "data" / "digits.csv.gz" for p in locations), None)
    if path is None or not path.is_file():
        raise DataUnavailable(
            "dataset digits: scikit-learn's digits.csv.gz is missing; pip install scikit-learn"
        )
    with gzip.open(path, "rt", encoding="utf-8") as text:
        data = np.loadtxt(text, delimiter=",")
    if data.shape != DIGITS_SHAPE:
        raise DataUnavailable(f"dataset digits: {path} holds {data.shape}, expected {DIGITS_SHAPE}")
    return data[:, :-1].reshape(-1, 1, 8, 8), data[:, -1].astype(int, copy=False)


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
    "fashion-mnist": fashion_mnist,
    "mnist": mnist,
    "austen": austen,
}
TRAIN_LIMIT = "train_limit"  # a dataset option every data set takes: keep the first N training examples


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
    """The splits an entry names: a built-in, `fashion-mnist:DIR` / `mnist:DIR`, or `module:factory`."""
    options = dict(options)
    name, sep, directory = entry.partition(":")
    if sep and name in IDX_DATASETS:
        entry, options["directory"] = name, directory
    limit = options.pop(TRAIN_LIMIT, None)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"dataset option {TRAIN_LIMIT} must be a positive integer, got {limit!r}")
    factory: DataFactory = resolve_factory(entry, BUILTIN_DATASETS, "dataset", ("seed", "options"))
    splits = factory(seed, options)
    if not isinstance(splits, Splits):
        raise ConfigError(f"dataset {entry!r} returned {type(splits).__name__}, not a tolaria.data.Splits")
    return splits if limit is None else splits.limit_train(limit)


def epoch_order(seed: int, epoch: int, size: int, examples: int = 0) -> torch.Tensor:
    """The training samples of an epoch, in order: a pure function of (seed, epoch). All `size` of them
    permuted, or with `examples` > 0 the first `examples` of that permutation (a fresh draw from the whole
    split each epoch, so epochs may be shorter than the split without repeating a subset)."""
    digest = hashlib.sha256(f"order/{seed}/{epoch}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    order = torch.randperm(size, generator=generator)
    return order[:examples] if examples > 0 else order


def batches(split: Split, order: torch.Tensor, batch_size: int, start: int = 0) -> Iterator[Split]:
    """Training batches in `order` from batch number `start` (the data-order cursor)."""
    order = order.to(split.inputs.device)
    for offset in range(start * batch_size, len(order), batch_size):
        index = order[offset : offset + batch_size]
        yield Split(split.inputs[index], split.targets[index])


def eval_batches(split: Split, batch_size: int) -> Iterator[Split]:
    for offset in range(0, len(split), batch_size):
        yield Split(split.inputs[offset : offset + batch_size], split.targets[offset : offset + batch_size])
