"""FactorySource over Karn's real templates: stable artifact hashes, independent copies, quarantine."""

from __future__ import annotations

import pytest
import torch

from domains.karn import catalog
from domains.karn.blueprint import Blueprint
from domains.kasmina import ArtifactUnavailable
from leyline import pb
from tests.kasmina.helpers import karn


def slot_for(blueprint: Blueprint) -> tuple[int, tuple[int, ...]]:
    if pb.SLOT_KIND_CONV2D in blueprint.kinds:
        return pb.SLOT_KIND_CONV2D, (8, 4, 4)
    if pb.SLOT_KIND_WIDEN in blueprint.kinds:
        return pb.SLOT_KIND_WIDEN, (8, 4, 4, 10)
    return pb.SLOT_KIND_SEQUENCE, (6, 8)


@pytest.mark.parametrize("blueprint", catalog.CATALOGUE, ids=lambda b: b.blueprint_id)
def test_every_template_loads_as_independent_copies_with_one_stable_hash(
    blueprint: Blueprint,
) -> None:
    kind, shape = slot_for(blueprint)
    source, other_process = karn(drill=True), karn(drill=True)
    first, hash1 = source.load_module(blueprint.blueprint_id, {}, kind, shape)
    second, hash2 = source.load_module(blueprint.blueprint_id, {}, kind, shape)
    _, hash3 = other_process.load_module(blueprint.blueprint_id, {}, kind, shape)
    assert hash1 == hash2 == hash3 and len(hash1) == 64
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert a is not b and a.data_ptr() != b.data_ptr()
        with torch.no_grad():
            a.add_(1.0)
        assert not torch.equal(a, b)


def test_quarantined_blueprints_load_only_from_a_drill_source() -> None:
    with pytest.raises(ArtifactUnavailable, match="fault drill"):
        karn(drill=False).load_module("BP045", {}, pb.SLOT_KIND_CONV2D, (8, 4, 4))
    module, _ = karn(drill=True).load_module("BP045", {"period": 1}, pb.SLOT_KIND_CONV2D, (8, 4, 4))
    assert torch.isnan(module(torch.zeros(2, 8, 4, 4))).all()
    with pytest.raises(ArtifactUnavailable, match="no module"):
        karn(drill=True).load_module("BP999", {}, pb.SLOT_KIND_CONV2D, (8, 4, 4))
