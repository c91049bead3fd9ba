"""Shared by the GNN tests: hosts, topologies, a GNN controller on Tamiyo's scripted inputs."""

from __future__ import annotations

import torch
from torch import nn

from domains.kasmina import SeedSlot
from domains.tamiyo.config import HeuristicConfig
from domains.tamiyo.gnn.controller import GnnController
from domains.tamiyo.gnn.network import initial_network
from domains.tamiyo.gnn.policy import GnnPolicy
from domains.tamiyo.gnn.topology import host_topology
from domains.tamiyo.policy_store import PolicyLibrary, VerifiedPolicy, publish, verify
from domains.tolaria.hosts import HostSpec, build_host
from domains.tolaria.workload import seed_slot
from eventstore import EventStore
from leyline import pb
from leyline.datadir import DataDir
from leyline.signing import Keyring, Signer
from tests.tamiyo.scripted import RUN_ID, estimate

DIGITS = (1, 8, 8)


class CustomHost(nn.Module):
    """A user's host: five slots, two of them on one layer's output, sequence and conv kinds mixed."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 3, 3, padding=1)
        self.norm = nn.BatchNorm2d(3)
        self.mix = nn.Linear(8, 8)
        self.head = nn.Linear(3 * 8 * 8, 10)
        self.conv_slots = nn.ModuleList(
            [SeedSlot(0, pb.SLOT_KIND_CONV2D, (3, 8, 8)), SeedSlot(1, pb.SLOT_KIND_CONV2D, (3, 8, 8))]
        )
        self.late = SeedSlot(4, pb.SLOT_KIND_CONV2D, (3, 8, 8))
        self.sequence = SeedSlot(7, pb.SLOT_KIND_SEQUENCE, (24, 8))
        self.last = SeedSlot(9, pb.SLOT_KIND_SEQUENCE, (24, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_slots[1](self.conv_slots[0](torch.relu(self.stem(x))))
        x = self.late(self.norm(x))
        h = self.sequence(x.reshape(x.shape[0], 24, 8))
        h = self.last(self.mix(h))
        return self.head(h.flatten(1))


def host(name: str) -> nn.Module:
    if name == "custom":
        return CustomHost()
    return build_host(name, HostSpec(DIGITS, 10, {}, seed_slot))


def topology(name: str) -> pb.HostTopology:
    return host_topology(host(name), DIGITS)


def published_policy(
    store: EventStore, data_dir: DataDir, keyring: Keyring, seed: int = 0, version: str | None = None
) -> VerifiedPolicy:
    library = PolicyLibrary(data_dir)
    envelope = publish(store, library, Signer(keyring), initial_network(seed), version=version)
    return verify(envelope, keyring, library)


def verified_in_memory(seed: int = 0, version: str = "v-test") -> VerifiedPolicy:
    return VerifiedPolicy(version, "", pb.EventEnvelope(), initial_network(seed))


def gnn_controller(
    initial: VerifiedPolicy,
    keyring: Keyring,
    data_dir: DataDir,
    *,
    host_name: str = "cnn-lite",
    seed: int = 0,
    **config: object,
) -> GnnController:
    shape = topology(host_name)
    policy = GnnPolicy(initial.network, initial.version, shape, HeuristicConfig(seed=seed, **config))  # type: ignore[arg-type]
    return GnnController(
        RUN_ID,
        initial,
        policy,
        keyring=keyring,
        library=PolicyLibrary(data_dir),
        data_dir=data_dir,
        signer=Signer(keyring),
        parameter_estimator=estimate,
        slot_kinds={s.slot: s.kind for s in shape.slots},
    )
