"""Building the AOTInductor package of strategy `aot_inductor:<device>` (the torch edge; see
domains/urza/aoti.py for what the package is and how it runs).

Reproducible bytes, so that a resumed or restored job writes the same artifact: the package is repacked
without its C++ sources (inductor appends build commands to them when it reuses its cache) and its random
serialization id, with fixed timestamps; and inductor builds in one fixed cache directory, because the
shared library records the paths of the sources it was built from.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir

from domains.urza.aoti import DTYPE, cpu_features, device_capability, dtype_name
from domains.urza.artifact import zip_entries

INDUCTOR_DIR = Path(tempfile.gettempdir()) / "esper-inductor"
_VARYING = (".cpp", "/serialization_id")


class _WeightsAsInputs(nn.Module):
    """The template's forward with its parameters and buffers passed in, in `names` order."""

    def __init__(self, template: nn.Module, names: list[str]) -> None:
        super().__init__()
        object.__setattr__(self, "template", template)  # not a submodule: its tensors are inputs here
        self.names = names

    template: nn.Module

    def forward(self, x: Tensor, state: tuple[Tensor, ...]) -> Tensor:
        tensors = dict(zip(self.names, state, strict=True))
        out: Tensor = torch.func.functional_call(self.template, tensors, (x,))
        return out


def canonical(package: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        return zip_entries(
            {name: archive.read(name) for name in archive.namelist() if not name.endswith(_VARYING)}
        )


def compile_package(
    template: nn.Module,
    example: Tensor,
    batch: torch.export.Dim,
    device: str,
    inductor_dir: Path = INDUCTOR_DIR,
) -> tuple[bytes, dict[str, Any]]:
    """The package of the template's eval forward on `device`, and the manifest entry describing it.

    Moves `template` to `device` and into eval mode: pass a module the caller is done with."""
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("strategy aot_inductor:cuda needs a CUDA device and this process has none")
    template = template.eval().to(device=device)
    state = [*template.named_parameters(), *template.named_buffers()]
    names = [name for name, _ in state]
    tensors = tuple(tensor.detach() for _, tensor in state)
    program = torch.export.export(
        _WeightsAsInputs(template, names),
        (example.to(device=device, dtype=DTYPE), tensors),
        dynamic_shapes=({0: batch}, (None,) * len(tensors)),
    )
    buffer = io.BytesIO()
    with temporary_cache_dir(str(inductor_dir)):
        torch._inductor.aoti_compile_and_package(program, package_path=buffer)
    target = {
        "device": device,
        "capability": device_capability(device),
        **({"cpu_features": cpu_features()} if device == "cpu" else {}),
        "inputs": [[name, dtype_name(tensor.dtype)] for name, tensor in zip(names, tensors, strict=True)],
        "slot_shape": list(example.shape[1:]),
        "use": "no-grad eval-mode forward on this device; weights are inputs, so trained weights apply",
    }
    return canonical(buffer.getvalue()), target
