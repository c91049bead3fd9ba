"""Fashion-MNIST and MNIST from the four standard IDX files of a directory, gzip-compressed or not.

`--dataset fashion-mnist` reads Debian's `dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist), or
`<ESPER_DATASETS_DIR>/fashion-mnist` when that variable is set; `--dataset mnist` reads
`<ESPER_DATASETS_DIR>/mnist` (Debian ships no MNIST); `fashion-mnist:DIR` and `mnist:DIR` (or the option
`directory`) read any directory holding train-images-idx3-ubyte, train-labels-idx1-ubyte,
t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each optionally with `.gz`.

Every file is checked before use: the IDX magic, the header's dimensions (60,000 training and 10,000 test
images of 28×28, labels 0–9), the payload length, and for Fashion-MNIST the SHA-256 of each decompressed
file, pinned from the Debian package (the upstream release's bytes). Images become [N, 1, 28, 28] floats
in [0, 1]. The validation split (`validation_size`, default 6,000) is carved from the shuffled training
files by `split_seed` (default: the run seed); the test split is the 10,000 test files, untouched.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from domains.tolaria.config import ConfigError
from domains.tolaria.datasets.splits import DataUnavailable, Split, Splits

DATASETS_DIR_ENV = "ESPER_DATASETS_DIR"
DEFAULT_DATASETS_DIR = Path("/usr/share/datasets")  # where Debian's dataset-* packages install
DEBIAN_PACKAGES = {"fashion-mnist": "dataset-fashion-mnist"}
IDX_DATASETS = ("fashion-mnist", "mnist")

IMAGE_SIDE = 28
NUM_CLASSES = 10
FILES = {  # stem -> expected dimensions
    "train-images-idx3-ubyte": (60_000, IMAGE_SIDE, IMAGE_SIDE),
    "train-labels-idx1-ubyte": (60_000,),
    "t10k-images-idx3-ubyte": (10_000, IMAGE_SIDE, IMAGE_SIDE),
    "t10k-labels-idx1-ubyte": (10_000,),
}
PINNED_SHA256 = {  # of the decompressed files, as Debian's dataset-fashion-mnist installs them
    "fashion-mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    }
}
IDX_UBYTE = 0x08
OPTIONS = ("directory", "split_seed", "validation_size")


def _directory(name: str, options: Mapping[str, Any]) -> Path:
    if "directory" in options:
        return Path(str(options["directory"])).expanduser()
    return Path(os.environ.get(DATASETS_DIR_ENV) or DEFAULT_DATASETS_DIR) / name


def _missing_hint(name: str) -> str:
    given = f"--dataset {name}:DIR or set {DATASETS_DIR_ENV} to a directory holding {name}/"
    package = DEBIAN_PACKAGES.get(name)
    return f"install the Debian package {package}, or pass {given}" if package else f"pass {given}"


def _file(name: str, directory: Path, stem: str) -> Path:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DataUnavailable(
        f"dataset {name}: no {stem}[.gz] in {directory}; {_missing_hint(name)}"
        if directory.is_dir()
        else f"dataset {name}: directory {directory} does not exist; {_missing_hint(name)}"
    )


def read_idx(path: Path, expected: tuple[int, ...], sha256: str | None, name: str) -> np.ndarray:
    """The array of one IDX file of unsigned bytes, after checking its header, length and digest."""
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise DataUnavailable(f"dataset {name}: cannot read {path}: {exc}") from None
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise DataUnavailable(f"dataset {name}: {path} is not the published file (sha256 differs)")
    rank = len(expected)
    header = 4 + 4 * rank
    if len(raw) < header or raw[:2] != b"\0\0" or raw[2] != IDX_UBYTE or raw[3] != rank:
        raise DataUnavailable(f"dataset {name}: {path} is not an IDX file of {rank}-d unsigned bytes")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    if dims != expected or len(raw) != header + int(np.prod(dims)):
        raise DataUnavailable(
            f"dataset {name}: {path} holds {dims} in {len(raw) - header} bytes, expected {expected}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_idx_directory(name: str, directory: Path) -> dict[str, np.ndarray]:
    """The four checked arrays, by file stem."""
    pinned = PINNED_SHA256.get(name, {})
    arrays = {
        stem: read_idx(_file(name, directory, stem), dims, pinned.get(stem), name)
        for stem, dims in FILES.items()
    }
    for stem in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        if int(arrays[stem].max()) >= NUM_CLASSES:
            raise DataUnavailable(f"dataset {name}: {stem} holds labels outside 0–{NUM_CLASSES - 1}")
    return arrays


def _images(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array.astype(np.float32) / 255.0).unsqueeze(1)


def _labels(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array.astype(np.int64))


def idx_splits(name: str, seed: int, options: Mapping[str, Any]) -> Splits:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(
            f"dataset {name}: unknown option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}"
        )
    split_seed = int(options.get("split_seed", seed))
    train_count = FILES["train-labels-idx1-ubyte"][0]
    validation_size = int(options.get("validation_size", train_count // 10))
    if split_seed < 0 or not 1 <= validation_size < train_count:
        raise ConfigError(
            f"dataset {name}: split_seed must be >= 0 and validation_size within [1, {train_count})"
        )
    arrays = load_idx_directory(name, _directory(name, options))
    order = np.random.default_rng(split_seed).permutation(train_count)
    images = arrays["train-images-idx3-ubyte"][order]
    labels = arrays["train-labels-idx1-ubyte"][order]
    return Splits(
        name,
        train=Split(_images(images[validation_size:]), _labels(labels[validation_size:])),
        validation=Split(_images(images[:validation_size]), _labels(labels[:validation_size])),
        test=Split(_images(arrays["t10k-images-idx3-ubyte"]), _labels(arrays["t10k-labels-idx1-ubyte"])),
        num_classes=NUM_CLASSES,
    )


def fashion_mnist(seed: int, options: Mapping[str, Any]) -> Splits:
    """Zalando's Fashion-MNIST: 10 classes of clothing, 60,000 + 10,000 28×28 grey images."""
    return idx_splits("fashion-mnist", seed, options)


def mnist(seed: int, options: Mapping[str, Any]) -> Splits:
    """LeCun's MNIST handwritten digits from the user's own IDX files (no Debian package ships them)."""
    return idx_splits("mnist", seed, options)
