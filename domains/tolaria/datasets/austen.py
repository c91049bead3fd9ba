"""Jane Austen's six novels as a character-level task: which novel a window of text comes from.

The text is Debian's `r-cran-janeaustenr` (the R package's lazy-load database, read without R through the
`rdata` package): each novel's lines joined by newlines, checked against a SHA-256 per novel pinned from
the Debian package. Inputs are fixed-length windows of `window` bytes (default 64; UTF-8, vocabulary 256)
as integer tokens [N, T]; the target is the novel (6 classes, in NOVELS order).

Why which-novel classification rather than next-character prediction: the hosts end in one pooled
classification head, and every decision the controller and the gates make reads one loss and one accuracy
per example. A window's novel is a label of the whole window, so the task fits the host as it is, its
accuracy is easy to read against chance (the largest novel holds 22 % of the text), and it needs style,
vocabulary and names spread over the window, where growth has room to help. Next-character prediction
would make the label depend on the last position only, which a mean-pooled head mostly discards.

Splits never share text: windows do not overlap, and runs of `block` consecutive windows (default 32,
about 2,000 characters) are dealt to test (10 %), validation (10 %) and train (the rest) by `split_seed`
(default: the run seed), so every part of every novel appears in each split. Test is read only at the end.
"""

from __future__ import annotations

import hashlib
import warnings
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from domains.tolaria.config import ConfigError
from domains.tolaria.datasets.splits import DataUnavailable, Split, Splits

DEBIAN_PACKAGE = "r-cran-janeaustenr"
DEFAULT_PACKAGE_DIR = Path("/usr/lib/R/site-library/janeaustenr")
NOVELS = {  # R object name -> SHA-256 of its lines joined by "\n", UTF-8, as Debian's package ships them
    "sensesensibility": "0996d90842bbe8093f3b8142c1e77d1b20cff52d1d0615f3ed67733653e74e26",
    "prideprejudice": "2e44edaa4946d64ad541c68e0224f5d672f43bf3ce2a8a0b0637ad5e02fc6eb3",
    "mansfieldpark": "e0e9ef3863ea77f51f6070062ee0dd50ad9b933223880617629e4e4963ea40ff",
    "emma": "dd08b340a56ad4a0a00718d5682528a5a5886ae0aef91c9e0fa528074fa64b75",
    "northangerabbey": "8618a5acf5be50cc6e9b7680c7469fb6012649ab08c709dfc63c6367989fd31d",
    "persuasion": "726513a6c18bb678427bcbcf7c72d0d20816a67c25b0471b26ddcabf3ebac140",
}
OPTIONS = ("directory", "window", "block", "split_seed")
HELD_OUT_FRACTION = 0.1  # of blocks, for validation and for test each


def _parse(data: bytes, what: Path) -> Any:
    import rdata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rdata warns that a lazy-load index has no .rds extension
        try:
            return rdata.conversion.convert(rdata.parser.parse_data(data))
        except (ValueError, NotImplementedError, KeyError) as exc:
            raise DataUnavailable(f"dataset austen: cannot parse {what}: {exc}") from None


def read_novels(package_dir: Path) -> dict[str, bytes]:
    """Each novel's text as UTF-8, read from the package's lazy-load database and checked."""
    index_path, database_path = package_dir / "data" / "Rdata.rdx", package_dir / "data" / "Rdata.rdb"
    if not index_path.is_file() or not database_path.is_file():
        raise DataUnavailable(
            f"dataset austen: no R data in {package_dir}; install the Debian package {DEBIAN_PACKAGE} "
            "or pass the option directory (the janeaustenr package directory)"
        )
    index = _parse(index_path.read_bytes(), index_path)
    database = database_path.read_bytes()
    variables = index.get("variables", {}) if isinstance(index, dict) else {}
    novels: dict[str, bytes] = {}
    for name, digest in NOVELS.items():
        if name not in variables:
            raise DataUnavailable(f"dataset austen: {database_path} holds no {name}")
        offset, length = (int(v) for v in variables[name])
        chunk = database[offset : offset + length]
        try:
            serialized = zlib.decompress(chunk[4:])  # a 4-byte length, then zlib (R's compress = TRUE)
        except zlib.error as exc:
            raise DataUnavailable(f"dataset austen: {name} in {database_path} is damaged: {exc}") from None
        text = "\n".join(str(line) for line in _parse(serialized, database_path)).encode()
        if hashlib.sha256(text).hexdigest() != digest:
            raise DataUnavailable(f"dataset austen: {name} in {database_path} is not the published text")
        novels[name] = text
    return novels


def _option(options: Mapping[str, Any], key: str, default: int, low: int) -> int:
    value = int(options.get(key, default))
    if value < low:
        raise ConfigError(f"dataset austen: {key} must be at least {low}, got {value}")
    return value


def austen(seed: int, options: Mapping[str, Any]) -> Splits:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(
            f"dataset austen: unknown option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}"
        )
    window = _option(options, "window", 64, 2)
    block = _option(options, "block", 32, 1)
    split_seed = _option(options, "split_seed", seed, 0)
    package_dir = Path(str(options.get("directory", DEFAULT_PACKAGE_DIR))).expanduser()
    windows, labels, blocks = [], [], []
    block_count = 0
    for label, text in enumerate(read_novels(package_dir).values()):
        count = len(text) // window
        windows.append(np.frombuffer(text[: count * window], dtype=np.uint8).reshape(count, window))
        labels.append(np.full(count, label, dtype=np.int64))
        blocks.append(block_count + np.arange(count) // block)
        block_count += -(-count // block)
    tokens, targets = np.concatenate(windows), np.concatenate(labels)
    rng = np.random.default_rng(split_seed)
    rank = np.empty(block_count, dtype=np.int64)
    rank[rng.permutation(block_count)] = np.arange(block_count)
    window_rank = rank[np.concatenate(blocks)]  # each window's block's place in the deal
    held_out = int(block_count * HELD_OUT_FRACTION)
    test = _split(tokens, targets, window_rank < held_out, rng)
    validation = _split(tokens, targets, (window_rank >= held_out) & (window_rank < 2 * held_out), rng)
    train = _split(tokens, targets, window_rank >= 2 * held_out, rng)
    return Splits("austen", train, validation, test, len(NOVELS))


def _split(tokens: np.ndarray, targets: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Split:
    index = np.flatnonzero(mask)
    index = index[rng.permutation(len(index))]
    return Split(torch.from_numpy(tokens[index].astype(np.int64)), torch.from_numpy(targets[index]))
