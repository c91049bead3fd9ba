"""Where seed modules come from: the ModuleSource protocol (Urza in production)."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, Protocol

import torch
from torch import nn


class ArtifactUnavailable(Exception):
    """The source cannot provide a verified module for the request (missing, corrupt, unknown)."""


class LoadedModule(NamedTuple):
    module: nn.Module  # a fresh instance, owned by the caller from now on
    artifact_hash: str  # sha256 of the verified artifact
    quarantine_only: bool = False  # adversarial blueprints: grafted only in an explicit fault drill


class ModuleSource(Protocol):
    def load_module(
        self,
        blueprint_id: str,
        parameters: Mapping[str, float],
        slot_kind: int,
        slot_shape: tuple[int, ...],
    ) -> LoadedModule:
        """A verified module for a slot of this kind and per-sample shape; raises ArtifactUnavailable."""
        ...


Factory = Callable[[int, tuple[int, ...], Mapping[str, float]], nn.Module]


class FactorySource:
    """An in-process module source from Python factories (hosts' own modules, tests, benchmarks).

    The first request for a (blueprint, parameters, slot) builds a prototype (weights seeded from the
    request), hashes its initial state as the artifact hash and caches it; later requests get a deep copy
    of the prototype (the warm path), so every graft of the same request starts from the same weights.
    """

    def __init__(self, factories: Mapping[str, Factory], quarantined: Iterable[str] = ()) -> None:
        self.factories = dict(factories)
        self.quarantined = frozenset(quarantined)
        self._cache: dict[tuple[Any, ...], tuple[nn.Module, str]] = {}

    def load_module(
        self,
        blueprint_id: str,
        parameters: Mapping[str, float],
        slot_kind: int,
        slot_shape: tuple[int, ...],
    ) -> LoadedModule:
        key = (blueprint_id, tuple(sorted(parameters.items())), slot_kind, tuple(slot_shape))
        cached = self._cache.get(key)
        if cached is None:
            factory = self.factories.get(blueprint_id)
            if factory is None:
                raise ArtifactUnavailable(f"no module for blueprint {blueprint_id!r}")
            # initial weights seeded from the request: the same request gives the same artifact in every
            # process, and building it draws nothing from the caller's random stream
            seed = int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:8], "little") >> 1
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                prototype = factory(slot_kind, tuple(slot_shape), parameters)
            cached = (prototype, _state_hash(prototype))
            self._cache[key] = cached
        prototype, artifact_hash = cached
        return LoadedModule(copy.deepcopy(prototype), artifact_hash, blueprint_id in self.quarantined)


def _state_hash(module: nn.Module) -> str:
    digest = hashlib.sha256(type(module).__qualname__.encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
