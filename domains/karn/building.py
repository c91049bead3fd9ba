"""Building a blueprint's module: validated against the catalogue, initialised from a stable seed, wrapped
in its side-effect fault where it has one; and its parameter count on a slot."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from functools import cache

import torch
from torch import nn

from domains.karn.blueprint import Blueprint, Use
from domains.karn.catalog import check_use, get, validate_parameters, validate_slot
from domains.karn.faults import FAULTS, FaultInjected


def seed_for(*parts: object) -> int:
    """A stable 63-bit seed from the parts' text (Python's hash() is salted per process)."""
    digest = hashlib.sha256("|".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def build(
    blueprint_id: str,
    parameters: Mapping[str, float],
    kind: int,
    shape: Sequence[int],
    *,
    use: Use = Use.LIVE,
    approved: Collection[str] = (),
    init_seed: int | None = None,
) -> nn.Module:
    """An eager module for the blueprint. init_seed makes its initial weights reproducible."""
    check_use(blueprint_id, use, approved)
    blueprint = get(blueprint_id)
    resolved = validate_parameters(blueprint_id, parameters)
    dims = validate_slot(blueprint_id, kind, shape)
    module = build_template(blueprint, resolved, kind, dims, init_seed)
    return with_fault(blueprint_id, resolved, module)


def build_template(
    blueprint: Blueprint,
    parameters: Mapping[str, float],
    kind: int,
    shape: tuple[int, ...],
    init_seed: int | None,
) -> nn.Module:
    """The template's tensor computation alone (what Tezzeret compiles); parameters already validated."""
    if init_seed is None:
        return blueprint.factory(kind, shape, parameters)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        return blueprint.factory(kind, shape, parameters)


def with_fault(blueprint_id: str, parameters: Mapping[str, float], module: nn.Module) -> nn.Module:
    """Wraps module in its side-effect fault for BP046–BP049; other blueprints are returned as they are."""
    fault = FAULTS.get(blueprint_id)
    return FaultInjected(module, fault(parameters)) if fault else module


@cache
def parameter_count(blueprint_id: str, kind: int, shape: tuple[int, ...]) -> int:
    """Trainable parameters of the blueprint at its default parameters on this slot."""
    blueprint = get(blueprint_id)
    module = build_template(blueprint, blueprint.defaults(), kind, shape, init_seed=0)
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
