"""Turning a CompileSpec into artifact bytes (the torch edge of Tezzeret).

Strategy "export" (the default, and the one that makes sense on CPU): torch.export of the template in
training mode and in eval mode, with a symbolic batch dimension; the eval program is kept only when its
graph differs (dropout, batch norm), see domains/urza/artifact.py. The template's initial weights come
from a seed derived from the job's spec, so compiling the same spec twice gives the same bytes, hence
the same sha256 and one file.

Strategy "aot_inductor" additionally packages an AOTInductor-compiled eval program (`aoti.pt2`, compiled
kernels for inference) beside the export programs; it pays on GPU, where inference of a fossilized or
evaluated seed runs the compiled kernels. Training always uses the exported graphs, which autograd can
differentiate; the AOTInductor package cannot.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

from domains.karn import catalog
from domains.tezzeret.jobs import CompileSpec
from domains.urza.artifact import EVAL_PROGRAM, FORMAT_VERSION, TRAIN_PROGRAM, pack, save_program

AOTI_PROGRAM = "aoti.pt2"
MAX_BATCH = 65_536


def template_for(spec: CompileSpec) -> nn.Module:
    """The template's tensor part with weights initialised from the spec's seed."""
    blueprint = catalog.get(spec.blueprint_id)
    return catalog.build_template(
        blueprint,
        spec.parameter_map(),
        spec.slot_kind,
        spec.slot_shape,
        init_seed=catalog.seed_for(spec.job_id, "init"),
    )


def example_input(spec: CompileSpec) -> torch.Tensor:
    generator = torch.Generator().manual_seed(catalog.seed_for(spec.job_id, "example"))
    return torch.randn(2, *spec.slot_shape, generator=generator)


def export(module: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    return torch.export.export(module, (example,), dynamic_shapes=({0: batch},))


def compile_artifact(spec: CompileSpec) -> bytes:
    if spec.strategy not in ("export", "aot_inductor"):
        raise ValueError(f"unknown compile strategy {spec.strategy!r}; use export or aot_inductor")
    module = template_for(spec)
    example = example_input(spec)
    initial_state = {name: tensor.clone() for name, tensor in module.state_dict().items()}
    train_program = export(module.train(), example)
    # Export may run the forward; put any buffer it changed (e.g. a call counter) back as it was.
    module.load_state_dict(initial_state)
    eval_program = export(module.eval(), example)
    module.load_state_dict(initial_state)
    programs = {TRAIN_PROGRAM: save_program(train_program)}
    modes = ["train"]
    if eval_program.graph_module.code != train_program.graph_module.code:
        programs[EVAL_PROGRAM] = save_program(eval_program)
        modes.append("eval")
    if spec.strategy == "aot_inductor":
        programs[AOTI_PROGRAM] = aot_inductor_package(eval_program)
    manifest = {
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
    return pack(manifest, programs)


def aot_inductor_package(program: torch.export.ExportedProgram) -> bytes:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / AOTI_PROGRAM
        torch._inductor.aoti_compile_and_package(program, package_path=str(path))
        return path.read_bytes()
