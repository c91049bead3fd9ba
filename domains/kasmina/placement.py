"""Where a host's and its seeds' tensors live: the device, and on a CPU the channels-last memory format.

    model = place(build_host(...), device)    # Tolaria, once per run (and the bench's plain loop)
    seed = place(loaded, slot.device)         # Kasmina, at every graft and every re-graft on resume

On a CPU, torch's max pooling in the default (NCHW) format is not vectorised, and its convolutions
reorder NCHW tensors on every call; in channels-last both run on vectors across channels. One training
step of cnn-lite at batch 64, one thread (this 2-core machine): 28×28 images (Fashion-MNIST) 4.55 ->
3.10 ms, the same at 12/24 channels 10.5 -> 5.8 ms, at 32/64 22.5 -> 17.1 ms; 8×8 (digits) 1.25 -> 1.31
(no gain at that size). A seed in the same format gains as much (forward and backward at batch 64:
BP051 on the 28×28 image 9.9 -> 5.9 ms, BP009 on 4×28×28 17.8 -> 7.9 ms), and a seed in the host's format
adds no reorder on the way in or out. Only 4-D tensors (convolution weights) change format; values are
the same numbers in another order, and a checkpoint stores them in logical order, so what it holds does
not depend on the format. A run's own figures do: its kernels sum in another order than in the default
format (as on another CPU), while on one machine a run is reproducible and its resume bit-identical. A
seed's AOTInductor package (compiled for the default format) then goes unused and its evaluation runs the
exported graph, on a CPU no slower (`esper bench blueprints`). Elsewhere than a CPU (unmeasured here)
tensors keep the default format.
"""

from __future__ import annotations

import torch
from torch import nn


def memory_format(device: torch.device) -> torch.memory_format:
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def place(module: nn.Module, device: torch.device) -> nn.Module:
    """The module on `device` in that device's memory format (in place, as `nn.Module.to`, which takes
    `memory_format` although torch's type stubs leave it out)."""
    placed: nn.Module = module.to(device=device, memory_format=memory_format(device))  # type: ignore[call-overload]
    return placed
