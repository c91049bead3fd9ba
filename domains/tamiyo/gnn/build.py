"""The GNN controller for a host: its topology, Karn's catalogue and estimates, and a verified policy."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from domains.tamiyo.catalogue import SlotShapes, karn_descriptors, karn_estimator
from domains.tamiyo.config import HeuristicConfig
from domains.tamiyo.gnn.controller import GnnController
from domains.tamiyo.gnn.policy import GnnPolicy
from domains.tamiyo.gnn.topology import host_topology
from domains.tamiyo.policy_store import (
    PolicyLibrary,
    UnknownPolicy,
    VerifiedPolicy,
    published,
    published_versions,
    verify,
)
from eventstore import EventStore
from leyline.datadir import DataDir
from leyline.signing import Keyring, Signer


def resolve_policy(
    store: EventStore, library: PolicyLibrary, keyring: Keyring, version: str | None
) -> VerifiedPolicy:
    """The named published version, else the latest one; verified (signature, hash, schema, shapes)."""
    if version:
        return verify(published(store, version), keyring, library)
    versions = published_versions(store)
    if not versions:
        raise UnknownPolicy("no policy is published in this log; publish one with `esper policy init`")
    return verify(list(versions.values())[-1], keyring, library)


def gnn_controller(
    run_id: str,
    keyring: Keyring,
    model: nn.Module,
    input_shape: Sequence[int],
    slots: SlotShapes,
    initial: VerifiedPolicy,
    data_dir: DataDir,
    config: HeuristicConfig | None = None,
) -> GnnController:
    topology = host_topology(model, input_shape)
    return GnnController(
        run_id,
        initial,
        GnnPolicy(initial.network, initial.version, topology, config),
        keyring=keyring,
        library=PolicyLibrary(data_dir),
        data_dir=data_dir,
        signer=Signer(keyring),
        parameter_estimator=karn_estimator(slots),
        slot_kinds={slot: kind for slot, (kind, _) in slots.items()},
        catalogue=karn_descriptors(),
    )
