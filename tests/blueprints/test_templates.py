"""Every non-adversarial template at both ends of its parameter ranges, on each slot kind it declares:
finite output of the input's shape, gradients reach every parameter, and the compiled artifact loads,
gives identical outputs (eval and train mode) and trains."""

from __future__ import annotations

import pytest
import torch

from domains.karn import catalog
from domains.karn.blocks import CONV, SEQUENCE, WIDEN, slot_io
from domains.tezzeret.compiler import compile_artifact, template_for
from domains.tezzeret.jobs import CompileSpec
from domains.urza.artifact import ArtifactModule, module_from, unpack

SHAPES: dict[int, tuple[int, ...]] = {CONV: (8, 8, 8), SEQUENCE: (12, 16), WIDEN: (8, 8, 8, 10)}
CASES = [
    pytest.param(
        blueprint.blueprint_id, end, kind, id=f"{blueprint.blueprint_id}-{blueprint.name}-{end}-{kind}"
    )
    for blueprint in catalog.CATALOGUE
    if not blueprint.quarantine_only
    for end in ("low", "high")
    for kind in blueprint.kinds
]


def spec_for(blueprint_id: str, end: str, kind: int) -> CompileSpec:
    low, high = catalog.get(blueprint_id).extremes()
    parameters = catalog.validate_parameters(blueprint_id, low if end == "low" else high)
    return CompileSpec.of(blueprint_id, parameters, kind, SHAPES[kind])


def assert_gradients_reach(module: torch.nn.Module, x: torch.Tensor) -> None:
    parameters = [p for p in module.parameters() if p.requires_grad]
    x = x.clone().requires_grad_(True)
    out = module(x)
    (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
    for parameter in parameters:
        assert parameter.grad is not None
        assert torch.isfinite(parameter.grad).all()
    if parameters:
        assert sum(float(p.grad.abs().sum()) for p in parameters if p.grad is not None) > 0
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize(("blueprint_id", "end", "kind"), CASES)
def test_template_and_its_artifact(blueprint_id: str, end: str, kind: int) -> None:
    spec = spec_for(blueprint_id, end, kind)
    eager = template_for(spec)
    inputs, outputs = slot_io(kind, SHAPES[kind])
    x = torch.randn(5, *inputs, generator=torch.Generator().manual_seed(7))

    eager.eval()
    expected_eval = eager(x)
    assert expected_eval.shape == (5, *outputs)
    assert torch.isfinite(expected_eval).all()

    loaded = module_from(unpack(compile_artifact(spec)))
    assert isinstance(loaded, ArtifactModule)
    loaded.eval()
    assert torch.equal(loaded(x), expected_eval)
    # A batch size other than the one used for export works too (the batch dimension is symbolic).
    assert torch.equal(loaded(x[:1]), eager(x[:1]))

    eager.train()
    loaded.train()
    torch.manual_seed(11)
    expected_train = eager(x)
    torch.manual_seed(11)
    assert torch.equal(loaded(x), expected_train)
    assert torch.isfinite(expected_train).all()

    assert_gradients_reach(eager, x)
    assert_gradients_reach(loaded, x)


@pytest.mark.parametrize("blueprint_id", ["BP002", "BP006", "BP023"])
def test_loaded_artifact_learns(blueprint_id: str) -> None:
    """A few optimiser steps on the loaded artifact reduce a regression loss."""
    spec = spec_for(blueprint_id, "low", CONV)
    module = module_from(unpack(compile_artifact(spec))).train()
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(16, *SHAPES[CONV], generator=generator)
    target = torch.randn(16, *SHAPES[CONV], generator=generator)
    optimiser = torch.optim.Adam(module.parameters(), lr=0.05)
    losses = []
    for _ in range(15):
        optimiser.zero_grad()
        loss = torch.nn.functional.mse_loss(module(x), target)
        loss.backward()
        optimiser.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]
