"""AOTInductor packages inside artifacts (strategy `aot_inductor:<device>`): loading and running them.

A package holds the template's eval-mode forward compiled to native code for one device. It takes the
weights as inputs, `package(x, (parameters..., buffers...))`, instead of baking them in: a seed's
weights change while it trains and every graft owns its own, so one loaded package serves every copy of
the artifact with the weights that copy holds now. It has no backward: `ArtifactModule` runs it only for
no-grad evaluation on its device, and the exported programs everywhere else.

The native code only runs where it was built (CUDA, or the CPU's instruction set: inductor compiles
with -march=native), so loading checks the manifest's device, capability and CPU features first and
answers a reason instead of a program where they differ; the exported eval program then does the work.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from domains.urza import metrics

log = logging.getLogger(__name__)
DTYPE = torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def cpu_features() -> str:
    """A digest of this CPU's instruction-set flags (Linux /proc/cpuinfo; "" elsewhere).

    inductor compiles CPU packages with -march=native, so they need every extension of the CPU that built
    them; the coarse capability level ("AVX512") is shared by CPUs that differ in those extensions, and
    running code built for another one can die on an illegal instruction instead of falling back.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "")
    except OSError:
        return ""
    return hashlib.sha256(" ".join(sorted(flags.partition(":")[2].split())).encode()).hexdigest()[:16]


def device_capability(device: str) -> str:
    """What native code built for `device` in this process requires of the machine running it."""
    if device == "cuda":
        major, minor = torch.cuda.get_device_capability()
        return f"sm_{major}{minor}"
    return str(torch.backends.cpu.get_cpu_capability())


class InferenceProgram:
    """A loaded package; stateless (weights come with every call), so all copies of an artifact share it."""

    def __init__(
        self, runner: Any, device: str, inputs: Sequence[tuple[str, str]], slot_shape: Sequence[int]
    ) -> None:
        self.runner = runner
        self.device = device
        self.inputs = tuple(name for name, _ in inputs)  # state tensors, in the order the package takes them
        self.dtypes = tuple(getattr(torch, dtype) for _, dtype in inputs)
        self.slot_shape = tuple(slot_shape)

    def accepts(self, x: Tensor, state: Sequence[Tensor]) -> bool:
        """Whether the package computes this call: its device, dtype and shapes (it checks none itself)."""
        return (
            x.device.type == self.device
            and x.dtype == DTYPE
            and tuple(x.shape[1:]) == self.slot_shape
            and x.shape[0] >= 1
            and all(
                t.device == x.device and t.dtype == dtype and t.is_contiguous()
                for t, dtype in zip(state, self.dtypes, strict=True)
            )
        )

    def __call__(self, x: Tensor, state: Sequence[Tensor]) -> Tensor:
        out: Tensor = self.runner(x.contiguous(), tuple(state))
        return out

    def __deepcopy__(self, memo: dict[int, Any]) -> InferenceProgram:
        return self


def unavailable_reason(target: Mapping[str, Any]) -> str:
    """Why a package built for `target` (the manifest's "inference" entry) cannot run here; "" if it can."""
    device = target.get("device")
    if device == "cuda" and not torch.cuda.is_available():
        return "it was compiled for cuda and this process has no CUDA device"
    if device not in ("cpu", "cuda"):
        return f"it was compiled for an unknown device {device!r}"
    built, here = target.get("capability"), device_capability(device)
    if built != here:
        return f"it was compiled for {device} capability {built!r}, this machine has {here!r}"
    if device == "cpu" and target.get("cpu_features") != cpu_features():
        return "it was compiled on a CPU with other instruction-set extensions (built with -march=native)"
    return ""


def load_inference(target: Mapping[str, Any], package: bytes) -> tuple[InferenceProgram | None, str]:
    """The package as a program, or None and the reason it cannot be used here (also logged and counted)."""
    reason = unavailable_reason(target)
    kind = "device"
    program = None
    if not reason:
        try:
            runner = torch._inductor.aoti_load_package(io.BytesIO(package))
            program = InferenceProgram(runner, target["device"], target["inputs"], target["slot_shape"])
        except Exception as exc:  # whatever stops the package, the exported eval program still works
            kind, reason = "load_error", f"the package did not load: {exc}"
    if program is None:
        log.warning("AOTInductor package not used (%s); no-grad eval runs the exported eval program", reason)
        metrics.INFERENCE_FALLBACKS.labels(kind).inc()
    return program, reason
