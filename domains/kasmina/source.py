"""Where seed modules come from: the ModuleSource protocol (Urza in production)."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import torch
from torch import nn


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


Factory = Callable[[int, tuple[int, ...], Mapping[str, float]], nn.Module]


class FactorySource:
    """An in-process module source from Python factories (hosts' own modules, tests, benchmarks).

    The first request for a (blueprint, parameters, slot) builds a prototype (weights seeded from the
    request), hashes its initial state as the artifact hash and caches it; every request gets its own
    copy of the prototype (`clone_module`, the warm path), so every graft of the same request starts
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
        try:
            return clone_module(prototype), artifact_hash
        except (TypeError, copy.Error):
            # state that cannot be copied (a fault template's lock or thread): build anew, same weights
            return self._build(key, blueprint_id, parameters, slot_kind, tuple(slot_shape)), artifact_hash

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
        seed = int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:8], "little") >> 1
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return factory(slot_kind, slot_shape, parameters)


def clone_module(module: nn.Module) -> nn.Module:
    """A copy of module with its own parameters, buffers, submodules and containers: what copy.deepcopy
    gives for a module, at a fraction of its cost (deepcopy walks every internal dict generically)."""
    clone = module.__class__.__new__(module.__class__)
    state: dict[str, Any] = {}
    for name, value in module.__dict__.items():
        if name == "_parameters":
            state[name] = {k: None if p is None else _clone_parameter(p) for k, p in value.items()}
        elif name == "_buffers":
            state[name] = {k: None if b is None else b.detach().clone() for k, b in value.items()}
        elif name == "_modules":
            state[name] = {k: None if m is None else clone_module(m) for k, m in value.items()}
        elif isinstance(value, dict | set | list):
            state[name] = copy.copy(value)  # hook tables, buffer-name sets: fresh containers
        elif isinstance(value, int | float | str | bool | bytes | tuple | frozenset | type(None)):
            state[name] = value
        else:
            state[name] = copy.deepcopy(value)
    clone.__dict__.update(state)
    return clone


def _clone_parameter(parameter: nn.Parameter) -> nn.Parameter:
    return nn.Parameter(parameter.detach().clone(), requires_grad=parameter.requires_grad)


def _state_hash(module: nn.Module) -> str:
    digest = hashlib.sha256(type(module).__qualname__.encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
