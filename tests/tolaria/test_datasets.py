"""Real data offline: Fashion-MNIST / MNIST IDX directories, Austen's novels, train_limit, hosts on them."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import cast

import pytest
import torch
from torch import nn

from domains.tolaria.config import ConfigError
from domains.tolaria.data import load_dataset
from domains.tolaria.datasets.austen import DEFAULT_PACKAGE_DIR, NOVELS, read_novels
from domains.tolaria.datasets.idx import DATASETS_DIR_ENV, DEFAULT_DATASETS_DIR, FILES, PINNED_SHA256
from domains.tolaria.datasets.splits import TOKEN_VOCABULARY, DataUnavailable
from domains.tolaria.hosts import HostSpec, SlotSpec, build_host, count_parameters
from leyline import pb
from ops.cli import main

FASHION_DIR = DEFAULT_DATASETS_DIR / "fashion-mnist"
needs_fashion = pytest.mark.skipif(
    not FASHION_DIR.is_dir(),
    reason="Debian package dataset-fashion-mnist is not installed (.ci/run installs it)",
)
needs_austen = pytest.mark.skipif(
    not DEFAULT_PACKAGE_DIR.is_dir(),
    reason="Debian package r-cran-janeaustenr is not installed (.ci/run installs it)",
)


@needs_fashion
def test_the_debian_files_are_the_pinned_ones() -> None:
    for stem, digest in PINNED_SHA256["fashion-mnist"].items():
        raw = gzip.decompress((FASHION_DIR / f"{stem}.gz").read_bytes())
        assert hashlib.sha256(raw).hexdigest() == digest, stem


@needs_fashion
def test_fashion_mnist_full_splits() -> None:
    splits = load_dataset("fashion-mnist", 3, {})
    assert splits.input_shape == (1, 28, 28) and splits.num_classes == 10
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (54_000, 6_000, 10_000)
    assert splits.train.inputs.dtype == torch.float32
    assert float(splits.train.inputs.min()) >= 0.0 and float(splits.train.inputs.max()) <= 1.0
    carved = torch.cat([splits.train.targets, splits.validation.targets])
    assert torch.bincount(carved).tolist() == [6_000] * 10  # validation comes out of the 60k training files
    assert torch.bincount(splits.test.targets).tolist() == [1_000] * 10
    again = load_dataset("fashion-mnist", 3, {})
    assert torch.equal(again.validation.targets, splits.validation.targets)  # the carve is fixed by the seed


@needs_fashion
def test_the_same_loader_reads_any_idx_directory_gz_or_not(tmp_path: Path) -> None:
    for stem in FILES:
        if stem.startswith("t10k"):
            (tmp_path / f"{stem}.gz").symlink_to(FASHION_DIR / f"{stem}.gz")
        else:
            (tmp_path / stem).write_bytes(gzip.decompress((FASHION_DIR / f"{stem}.gz").read_bytes()))
    splits = load_dataset(f"mnist:{tmp_path}", 0, {"train_limit": 500})
    assert splits.name == "mnist" and len(splits.train) == 500 and len(splits.test) == 10_000
    labels = tmp_path / "train-labels-idx1-ubyte"
    damaged = bytearray(labels.read_bytes())
    damaged[-1] = (damaged[-1] + 1) % 10  # still a valid label: only the digest can tell
    labels.write_bytes(bytes(damaged))
    with pytest.raises(DataUnavailable, match="not the published file"):
        load_dataset(f"fashion-mnist:{tmp_path}", 0, {})
    labels.write_bytes(bytes(damaged[:-1]))
    with pytest.raises(DataUnavailable, match=r"expected \(60000,\)"):
        load_dataset(f"mnist:{tmp_path}", 0, {})


def test_a_missing_directory_is_one_line_naming_the_package_or_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DataUnavailable) as missing:
        load_dataset(f"mnist:{tmp_path / 'absent'}", 0, {})
    assert "\n" not in str(missing.value) and "--dataset mnist:DIR" in str(missing.value)
    monkeypatch.setenv(DATASETS_DIR_ENV, str(tmp_path))
    (tmp_path / "fashion-mnist").mkdir()
    with pytest.raises(DataUnavailable, match=r"no train-images-idx3-ubyte.*dataset-fashion-mnist"):
        load_dataset("fashion-mnist", 0, {})


def test_esper_run_on_missing_data_exits_1_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "--data-dir", str(tmp_path / "d"), "--dataset", f"mnist:{tmp_path / 'none'}"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("esper run: dataset mnist: directory")


@needs_fashion
def test_esper_run_trains_cnn_lite_on_a_fashion_mnist_subset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "run.json"
    config.write_text(
        json.dumps({"controller": "noop", "epochs": 2, "dataset_options": {"train_limit": 600}})
    )
    args = ["run", "--data-dir", str(tmp_path / "d"), "--dataset", "fashion-mnist", "--config", str(config)]
    assert main([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["epochs"] == 2 and summary["test_accuracy"] > 0.3  # ten classes: chance is 0.1


@needs_austen
def test_austen_windows_label_the_novel_and_splits_share_no_block() -> None:
    novels = read_novels(DEFAULT_PACKAGE_DIR)
    assert 3_900_000 < sum(len(text) for text in novels.values()) < 4_100_000
    splits = load_dataset("austen", 0, {"window": 32})
    assert splits.input_shape == (32,) and splits.num_classes == len(NOVELS) == 6
    assert splits.train.inputs.dtype == torch.int64 and int(splits.train.inputs.max()) < TOKEN_VOCABULARY
    windows = [len(text) // 32 for text in novels.values()]
    parts = (splits.train, splits.validation, splits.test)
    assert sum(len(part) for part in parts) == sum(windows)
    counts = sum(torch.bincount(part.targets, minlength=6) for part in parts)
    assert isinstance(counts, torch.Tensor) and counts.tolist() == windows
    for part in (splits.validation, splits.test):
        assert 0.08 < len(part) / sum(windows) < 0.12 and torch.bincount(part.targets).min() > 0
    first = splits.test.inputs[0]
    label = int(splits.test.targets[0])
    text = list(novels.values())[label]
    offset = text.find(bytes(first.to(torch.uint8).tolist()))
    assert offset >= 0 and offset % 32 == 0  # a window is an aligned, non-overlapping piece of its novel


def test_austen_without_the_package_names_it(tmp_path: Path) -> None:
    with pytest.raises(DataUnavailable, match="install the Debian package r-cran-janeaustenr"):
        load_dataset("austen", 0, {"directory": str(tmp_path)})


def test_train_limit_keeps_the_first_examples_and_nothing_else() -> None:
    full = load_dataset("digits", 0, {})
    limited = load_dataset("digits", 0, {"train_limit": 100})
    assert len(limited.train) == 100 and torch.equal(limited.train.targets, full.train.targets[:100])
    assert torch.equal(limited.validation.inputs, full.validation.inputs)
    assert torch.equal(limited.test.inputs, full.test.inputs)
    for bad in (0, "10", True):
        with pytest.raises(ConfigError, match="train_limit must be a positive integer"):
            load_dataset("digits", 0, {"train_limit": bad})


def slot_specs(host: nn.Module) -> tuple[SlotSpec, ...]:
    return cast(tuple[SlotSpec, ...], host.slot_specs)


def test_hosts_take_their_input_shape_from_the_data() -> None:
    cnn = build_host("cnn-lite", HostSpec((1, 28, 28), 10))
    assert [s.shape for s in slot_specs(cnn)] == [(4, 28, 28), (8, 14, 14), (8, 7, 7), (1, 28, 28, 10)]
    assert cnn(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    transformer = build_host("transformer-lite", HostSpec((64,), 6))
    assert len(slot_specs(transformer)) >= 3
    assert all(s.kind == pb.SLOT_KIND_SEQUENCE and s.shape == (64, 16) for s in slot_specs(transformer))
    assert transformer(torch.randint(0, TOKEN_VOCABULARY, (2, 64))).shape == (2, 6)
    with pytest.raises(ConfigError, match="tokens \\[T\\]"):
        build_host("transformer-lite", HostSpec((2, 3, 4, 5), 6))


@needs_fashion
def test_esper_datasets_dir_is_where_named_data_sets_are_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "fashion-mnist").symlink_to(FASHION_DIR)
    (tmp_path / "mnist").symlink_to(FASHION_DIR)
    monkeypatch.setenv(DATASETS_DIR_ENV, str(tmp_path))
    assert len(load_dataset("mnist", 0, {"train_limit": 10}).train) == 10


@needs_austen
def test_esper_run_trains_transformer_lite_on_austen_windows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "run.json"
    options = {"train_limit": 300, "window": 16}
    config.write_text(json.dumps({"controller": "noop", "epochs": 1, "dataset_options": options}))
    args = ["run", "--data-dir", str(tmp_path / "d"), "--dataset", "austen", "--host", "transformer-lite"]
    assert main([*args, "--config", str(config), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    token_host = build_host("transformer-lite", HostSpec((16,), len(NOVELS)))  # shaped by the windows
    assert summary["epochs"] == 1 and summary["parameters"] == count_parameters(token_host)
