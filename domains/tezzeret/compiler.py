"""Turning a CompileSpec into artifact bytes (the torch edge of Tezzeret).

Strategy "export" (the default, and the one that makes sense on CPU): torch.export of the template in
training mode, with a symbolic batch dimension, and also in eval mode when the template holds
mode-dependent modules (dropout, batch norm), see domains/urza/artifact.py. The template's initial
weights come from a seed derived from the job's spec, so compiling the same spec twice gives the same
bytes, hence the same sha256 and one file.

Strategy "aot_inductor:<device>": the same exported programs, from the same initial weights as the
export job of the spec (training needs them: the package has no backward), plus an AOTInductor package
of the eval forward for that device (domains/tezzeret/aoti.py).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from domains.karn import building, catalog
from domains.karn.blocks import slot_io
from domains.tezzeret.jobs import DEFAULT_STRATEGY, STRATEGIES, CompileSpec, strategy_device
from domains.urza.artifact import (
    EVAL_PROGRAM,
    FORMAT_VERSION,
    INFERENCE_PROGRAM,
    TRAIN_PROGRAM,
    pack,
    save_program,
)

MAX_BATCH = 65_536
MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)


def _seed_key(spec: CompileSpec) -> str:
    """Seeds come from the default-strategy job of the spec: every strategy starts from the same weights."""
    return replace(spec, strategy=DEFAULT_STRATEGY).job_id


def template_for(spec: CompileSpec) -> nn.Module:
    """The template's tensor part with weights initialised from the spec's seed."""
    blueprint = catalog.get(spec.blueprint_id)
    return building.build_template(
        blueprint,
        spec.parameter_map(),
        spec.slot_kind,
        spec.slot_shape,
        init_seed=building.seed_for(_seed_key(spec), "init"),
    )


def example_input(spec: CompileSpec) -> torch.Tensor:
    generator = torch.Generator().manual_seed(building.seed_for(_seed_key(spec), "example"))
    return torch.randn(2, *slot_io(spec.slot_kind, spec.slot_shape)[0], generator=generator)


def batch_dim() -> torch.export.Dim:
    return torch.export.Dim("batch", min=1, max=MAX_BATCH)


def export(module: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    return torch.export.export(module, (example,), dynamic_shapes=({0: batch_dim()},))


def warm_up() -> bytes:
    """Export a parameter-free module once: a process's first export pays for torch.export's lazy imports
    and first-use set-up (about 1.5 s of CPU here, against well under 0.3 s for a later one), so a
    compiler process that warms up while it waits for work compiles its first job quickly. It draws
    nothing from torch's random number generator. Returns the saved program: the first load of a process
    pays a like set-up (about 0.3 s against 0.03 s, urza.artifact.load_graph), which loading it pays."""
    return save_program(export(nn.ReLU(), torch.zeros(2, 1)))


def mode_dependent(module: nn.Module) -> bool:
    """Whether the module computes differently in training and eval mode (dropout, batch norm).

    Templates are built from torch's modules and never read `self.training` themselves, so the module
    types tell; test_templates checks every artifact against its eager template in both modes.
    """
    return any(isinstance(m, MODE_DEPENDENT) for m in module.modules())


def compile_artifact(spec: CompileSpec, inductor_dir: Path | None = None) -> bytes:
    """The artifact of `spec`; `inductor_dir` is where an aot_inductor build runs (default aoti.py's)."""
    if spec.strategy not in STRATEGIES:
        raise ValueError(f"unknown compile strategy {spec.strategy!r}; use one of: {', '.join(STRATEGIES)}")
    module = template_for(spec)
    example = example_input(spec)
    initial_state = {name: tensor.clone() for name, tensor in module.state_dict().items()}
    train_program = export(module.train(), example)
    programs = {TRAIN_PROGRAM: save_program(train_program)}
    modes = ["train"]
    if mode_dependent(module):
        # Export may run the forward; put any buffer it changed (e.g. running statistics) back first.
        module.load_state_dict(initial_state)
        programs[EVAL_PROGRAM] = save_program(export(module.eval(), example))
        modes.append("eval")
    manifest: dict[str, object] = {
        "format": FORMAT_VERSION,
        "blueprint_id": spec.blueprint_id,
        "name": catalog.get(spec.blueprint_id).name,
        "parameters": spec.parameter_map(),
        "slot_kind": spec.slot_kind,
        "slot_shape": list(spec.slot_shape),
        "strategy": spec.strategy,
        "modes": modes,
        "job_id": spec.job_id,
        "torch": torch.__version__.split("+")[0],
    }
    device = strategy_device(spec.strategy)
    if device is not None:
        # torch._inductor takes seconds to import: only the aot_inductor strategy loads it
        from domains.tezzeret.aoti import INDUCTOR_DIR, compile_package

        module.load_state_dict(initial_state)
        programs[INFERENCE_PROGRAM], manifest["inference"] = compile_package(
            module, example, batch_dim(), device, inductor_dir or INDUCTOR_DIR
        )
    return pack(manifest, programs)
