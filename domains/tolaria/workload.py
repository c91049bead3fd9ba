"""What a run trains: the device, the data splits, the host model and its optimizer, built from a RunConfig.

Built before the run's collaborators (Kasmina grafts into the host's slots and attaches the optimizer),
in this order, after seeding every RNG: a run rebuilt from the same config gets the same data split and
the same initial weights.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from domains.kasmina import SeedSlot, make_slot
from domains.kasmina.placement import place
from domains.tolaria.config import ConfigError, RunConfig
from domains.tolaria.data import Splits, load_dataset
from domains.tolaria.hosts import HostSpec, SlotSpec, build_host


def seed_slot(spec: SlotSpec) -> SeedSlot:
    """The slot module of a run's host: Kasmina's SeedSlot, or its WideningSlot for a widening (the
    identity while DORMANT)."""
    return make_slot(spec.slot, spec.kind, spec.shape)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))


def device_for(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name} requested but torch sees no CUDA device; use --device cpu")
    return torch.device(name)


@dataclass
class Workload:
    device: torch.device
    splits: Splits
    host_spec: HostSpec
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer


def build_workload(config: RunConfig) -> Workload:
    device = device_for(config.device)
    torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    splits = load_dataset(config.dataset, config.seed, config.dataset_options).to(device)
    host_spec = HostSpec(splits.input_shape, splits.num_classes, config.host_options, seed_slot)
    model = build_model(config.host, host_spec, device)
    optimizer = build_optimizer(model.parameters(), config)
    return Workload(device, splits, host_spec, model, optimizer)


def build_model(host: str, spec: HostSpec, device: torch.device) -> torch.nn.Module:
    """The host as every run trains it: built from its spec and placed on the device (in its format)."""
    return place(build_host(host, spec), device)


def build_optimizer(parameters: Iterable[torch.nn.Parameter], config: RunConfig) -> torch.optim.Optimizer:
    """The run's optimizer over the host's parameters (Kasmina adds each seed's group to it).

    foreach: each step updates all parameters of a group with a few multi-tensor kernels instead of a
    Python loop of seven kernels per tensor (torch's default on CPU): the same arithmetic, bit for bit,
    ~1 ms less per step of a grown cnn-lite (~20 tensors); CUDA's default already."""
    return torch.optim.AdamW(
        parameters, lr=config.learning_rate, weight_decay=config.weight_decay, foreach=True
    )
