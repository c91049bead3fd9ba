"""Config validation, data splits and batch order, host models and their slots."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from domains.tolaria.config import ConfigError, RunConfig, build_config, load_config_file
from domains.tolaria.data import batches, epoch_order, load_dataset
from domains.tolaria.hosts import HostSpec, SlotSpec, build_host, count_parameters
from leyline import pb


def test_defaults_and_overrides() -> None:
    config = build_config({"epochs": 3, "learning_rate": 1})
    assert config.epochs == 3
    assert config.learning_rate == 1.0 and isinstance(config.learning_rate, float)
    assert config.host == "cnn-lite" and config.dataset == "digits"
    assert build_config({}) == RunConfig()


def test_unknown_key_names_it_and_the_known_keys() -> None:
    with pytest.raises(ConfigError, match="unknown config key\\(s\\) epoch; known keys: epochs"):
        build_config({"epoch": 3})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epochs": "3"}, "must be an integer"),
        ({"epochs": True}, "must be an integer"),
        ({"epochs": 0}, "at least 1"),
        ({"learning_rate": "fast"}, "must be a number"),
        ({"host_options": 3}, "table/object"),
        ({"device": "tpu"}, "cpu or cuda"),
        ({"controller": "magic"}, "unknown controller 'magic'"),
        ({"loss_explosion_factor": 1.0}, "above 1"),
    ],
)
def test_bad_values_are_rejected(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config(values)


def test_config_files(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text('epochs = 4\nhost = "transformer-lite"\n[host_options]\ndim = 8\n')
    assert build_config(load_config_file(toml)).host_options == {"dim": 8}
    bad = tmp_path / "run.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid json"):
        load_config_file(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config_file(tmp_path / "absent.json")


def test_config_json_round_trips() -> None:
    import json

    config = build_config({"epochs": 7, "host_options": {"channels1": 2}})
    assert build_config(json.loads(config.to_json())) == config


def test_digits_split_is_fixed_by_the_seed_and_disjoint() -> None:
    a = load_dataset("digits", 3, {})
    b = load_dataset("digits", 3, {})
    c = load_dataset("digits", 4, {})
    assert torch.equal(a.train.inputs, b.train.inputs)
    assert not torch.equal(a.train.inputs, c.train.inputs)
    assert (len(a.train), len(a.validation), len(a.test)) == (1259, 179, 359)
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10
    assert float(a.train.inputs.max()) <= 1.0
    rows = {tuple(x.flatten().tolist()) for x in a.test.inputs}
    overlap = sum(tuple(x.flatten().tolist()) in rows for x in a.train.inputs)
    assert overlap < 5  # digits holds a handful of duplicate images, nothing more


def test_unknown_dataset_and_plugin_errors() -> None:
    with pytest.raises(ConfigError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet", 0, {})
    with pytest.raises(ConfigError, match="cannot import"):
        load_dataset("no_such_module_xyz:make", 0, {})
    with pytest.raises(ConfigError, match="has no attribute"):
        load_dataset("domains.tolaria.data:nothing_here", 0, {})
    with pytest.raises(ConfigError, match="unknown option"):
        load_dataset("synthetic-images", 0, {"size": 3})


def test_plugin_factory_is_loaded() -> None:
    splits = load_dataset("domains.tolaria.data:synthetic_sequences", 1, {"samples": 100, "classes": 2})
    assert splits.input_shape == (8, 8) and splits.num_classes == 2


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), epoch=st.integers(1, 10_000), size=st.integers(1, 300))
def test_epoch_order_is_a_deterministic_permutation(seed: int, epoch: int, size: int) -> None:
    order = epoch_order(seed, epoch, size)
    assert torch.equal(order, epoch_order(seed, epoch, size))
    assert sorted(order.tolist()) == list(range(size))


def test_an_epoch_of_fewer_examples_is_a_fresh_draw_from_the_whole_split() -> None:
    orders = [epoch_order(3, epoch, 1000, examples=100) for epoch in range(1, 11)]
    assert all(torch.equal(o, epoch_order(3, e, 1000)[:100]) for e, o in enumerate(orders, start=1))
    assert all(len(set(o.tolist())) == 100 for o in orders)
    seen = set().union(*(o.tolist() for o in orders))
    assert len(seen) > 500  # ten epochs of 100 reach most of the split, not one fixed subset
    assert torch.equal(epoch_order(3, 1, 50, examples=100), epoch_order(3, 1, 50))


def test_epoch_examples_must_not_be_negative() -> None:
    assert build_config({"epoch_examples": 10}).epoch_examples == 10
    with pytest.raises(ConfigError, match="epoch_examples must be 0"):
        build_config({"epoch_examples": -1})


def test_batches_resume_from_the_cursor() -> None:
    splits = load_dataset("synthetic-images", 0, {"samples": 200})
    order = epoch_order(0, 1, len(splits.train))
    every = list(batches(splits.train, order, 32))
    tail = list(batches(splits.train, order, 32, start=2))
    assert len(tail) == len(every) - 2
    assert all(torch.equal(x.targets, y.targets) for x, y in zip(every[2:], tail, strict=True))
    assert sum(len(b) for b in every) == len(splits.train)


@pytest.mark.parametrize(
    ("host", "dataset"),
    [("cnn-lite", "digits"), ("transformer-lite", "digits"), ("transformer-lite", "synthetic-sequences")],
)
def test_hosts_declare_at_least_three_slots_and_call_them(host: str, dataset: str) -> None:
    splits = load_dataset(dataset, 0, {})
    calls: list[int] = []

    class Recording(nn.Module):
        def __init__(self, spec: SlotSpec) -> None:
            super().__init__()
            self.spec = spec

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            # a widening slot is called with (tap, x): the tap [C, H, W] and the stream [K] it adds to
            shapes = tuple(d for x in inputs for d in x.shape[1:])
            assert shapes == self.spec.shape
            calls.append(self.spec.slot)
            return inputs[-1]

    model = build_host(host, HostSpec(splits.input_shape, splits.num_classes, {}, Recording))
    specs: tuple[SlotSpec, ...] = model.slot_specs  # type: ignore[assignment]
    assert len(specs) >= 3
    kinds = [s.kind for s in specs]
    if host == "cnn-lite":
        assert kinds == [pb.SLOT_KIND_CONV2D] * 3 + [pb.SLOT_KIND_WIDEN]
    else:
        assert kinds == [pb.SLOT_KIND_SEQUENCE] * 3
    out = model(splits.train.inputs[:5])
    assert out.shape == (5, splits.num_classes)
    assert calls == list(range(len(specs)))


def test_cnn_lite_is_small_by_default() -> None:
    model = build_host("cnn-lite", HostSpec((1, 8, 8), 10))
    assert 500 <= count_parameters(model) <= 1500


def test_host_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="unknown option"):
        build_host("cnn-lite", HostSpec((1, 8, 8), 10, {"width": 3}))
    with pytest.raises(ConfigError, match="needs image inputs"):
        build_host("cnn-lite", HostSpec((8, 8), 10))
    with pytest.raises(ConfigError, match="slot_specs"):
        build_host("torch.nn:Identity", HostSpec((1, 8, 8), 10))


def test_cnn_lite_kernels_are_options() -> None:
    default = count_parameters(build_host("cnn-lite", HostSpec((1, 8, 8), 10)))
    pointwise = build_host("cnn-lite", HostSpec((1, 8, 8), 10, {"kernel1": 1}))
    assert count_parameters(pointwise) == default - 4 * 8  # conv1: 4 filters of 1×1 instead of 3×3
    assert pointwise(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(ConfigError, match="kernels must be odd"):
        build_host("cnn-lite", HostSpec((1, 8, 8), 10, {"kernel2": 2}))


def test_digits_split_can_be_fixed_across_run_seeds_and_sized() -> None:
    a, b = load_dataset("digits", 1, {"split_seed": 7}), load_dataset("digits", 2, {"split_seed": 7})
    assert torch.equal(a.test.targets, b.test.targets) and torch.equal(a.train.inputs, b.train.inputs)
    assert not torch.equal(load_dataset("digits", 1, {}).test.targets, a.test.targets)
    wide = load_dataset("digits", 0, {"test_fraction": 0.4})
    assert len(wide.test) == int(1797 * 0.4) and len(wide.validation) == 179
    assert len(wide.train) + len(wide.validation) + len(wide.test) == 1797
    with pytest.raises(ConfigError, match="unknown option"):
        load_dataset("digits", 0, {"samples": 10})
    with pytest.raises(ConfigError, match="test_fraction"):
        load_dataset("digits", 0, {"test_fraction": 0.9})
