"""Where seed modules come from: the ModuleSource protocol (Urza in production)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import torch
from torch import nn

from domains.karn import building
from domains.karn.blueprint import Factory
from domains.urza.artifact import fresh_copy


class ArtifactUnavailable(Exception):
    """The source cannot provide a verified module for the request (missing, corrupt, unknown)."""


class ModuleSource(Protocol):
    def load_module(
        self,
        blueprint_id: str,
        parameters: Mapping[str, float],
        slot_kind: int,
        slot_shape: tuple[int, ...],
    ) -> tuple[nn.Module, str]:
        """A fresh module (owned by the caller) for a slot of this kind and per-sample shape, and the sha256
        of its verified artifact. Raises when it cannot: missing, corrupt, or quarantine-only (adversarial)
        outside a fault drill; Kasmina turns any failure into a failed G0. Urza's SeedModuleSource is the
        production source (a drill passes it `use=Use.DRILL`)."""
        ...


class FactorySource:
    """An in-process module source from Python factories (hosts' own modules, tests, benchmarks).

    The first request for a (blueprint, parameters, slot) builds a prototype (weights seeded from the
    request), hashes its initial state as the artifact hash and caches it; every request gets its own
    copy of the prototype (Urza's `fresh_copy`, the warm path), so every graft of the same request starts
    from the same weights.
    """

    def __init__(
        self, factories: Mapping[str, Factory], quarantined: Iterable[str] = (), drill: bool = False
    ) -> None:
        self.factories = dict(factories)
        self.quarantined = frozenset(quarantined)  # refused unless this is a fault-drill source
        self.drill = drill
        self._cache: dict[tuple[Any, ...], tuple[nn.Module, str]] = {}

    def load_module(
        self,
        blueprint_id: str,
        parameters: Mapping[str, float],
        slot_kind: int,
        slot_shape: tuple[int, ...],
    ) -> tuple[nn.Module, str]:
        if blueprint_id in self.quarantined and not self.drill:
            raise ArtifactUnavailable(
                f"{blueprint_id} is quarantine-only: it is grafted only in a fault drill"
            )
        key = (blueprint_id, tuple(sorted(parameters.items())), slot_kind, tuple(slot_shape))
        cached = self._cache.get(key)
        if cached is None:
            prototype = self._build(key, blueprint_id, parameters, slot_kind, tuple(slot_shape))
            cached = (prototype, _state_hash(prototype))
            self._cache[key] = cached
        prototype, artifact_hash = cached
        return fresh_copy(prototype), artifact_hash

    def _build(
        self,
        key: tuple[Any, ...],
        blueprint_id: str,
        parameters: Mapping[str, float],
        slot_kind: int,
        slot_shape: tuple[int, ...],
    ) -> nn.Module:
        factory = self.factories.get(blueprint_id)
        if factory is None:
            raise ArtifactUnavailable(f"no module for blueprint {blueprint_id!r}")
        # initial weights seeded from the request: the same request gives the same artifact in every
        # process, and building it draws nothing from the caller's random stream
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(building.seed_for(repr(key)))
            return factory(slot_kind, slot_shape, parameters)


def _state_hash(module: nn.Module) -> str:
    digest = hashlib.sha256(type(module).__qualname__.encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
