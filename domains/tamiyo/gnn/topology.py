"""A host's topology for Tamiyo's graph: its parametered layers in forward order and where its slots sit.

`host_topology(model, input_shape)` runs one forward pass of a zero input in eval mode under
`torch.no_grad` with forward hooks: every module with parameters of its own becomes a layer, in the order
its forward completes, and every seed slot (Kasmina's `SeedSlot`) sits on the output of the last layer
that completed before it. The pass changes no parameter, buffer or random state. Any host works (cnn-lite,
transformer-lite, a user's module with `slot_specs`); parameters of the root module itself (e.g. a learned
position table), of modules whose forward never runs and of seeds grafted into the slots are not layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from domains.kasmina.slot import SeedSlot
from leyline import pb

LAYER_KINDS = ("conv", "linear", "norm", "attention", "embedding", "other")


def layer_kind(module: nn.Module) -> str:
    name = type(module).__name__.lower()
    for kind, markers in (
        ("attention", ("attention",)),
        ("conv", ("conv",)),
        ("norm", ("norm",)),
        ("embedding", ("embedding",)),
        ("linear", ("linear",)),
    ):
        if any(marker in name for marker in markers):
            return kind
    return "other"


def _shape(output: object) -> tuple[int, ...]:
    tensor = output[0] if isinstance(output, tuple) and output else output
    if isinstance(tensor, torch.Tensor) and tensor.dim() >= 1:
        return tuple(int(d) for d in tensor.shape[1:])
    return ()


def host_topology(model: nn.Module, input_shape: Sequence[int]) -> pb.HostTopology:
    """Trace the host once; raises ValueError when it has no seed slot or no parametered layer."""
    layers: list[pb.HostLayer] = []
    slots: list[pb.HostSlot] = []
    seen: set[int] = set()
    handles = []

    def on_layer(name: str) -> object:
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            if id(module) in seen:
                return
            seen.add(id(module))
            parameters = list(module.parameters(recurse=False))
            layers.append(
                pb.HostLayer(
                    name=name,
                    kind=layer_kind(module),
                    parameter_sizes=[p.numel() for p in parameters],
                    parameter_ranks=[p.dim() for p in parameters],
                    output_shape=_shape(output),
                )
            )

        return hook

    def on_slot(module: nn.Module, inputs: object, output: object) -> None:
        assert isinstance(module, SeedSlot)
        if id(module) in seen:
            return
        seen.add(id(module))
        slots.append(
            pb.HostSlot(
                slot=module.slot,
                kind=cast(pb.SlotKind, module.kind),
                shape=module.shape,
                after_layer=max(len(layers) - 1, 0),
            )
        )

    slot_names: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, SeedSlot):
            slot_names.append(f"{name}.")
            handles.append(module.register_forward_hook(on_slot))
        elif any(name.startswith(prefix) for prefix in slot_names):
            continue  # a grafted seed's modules belong to the seed, not to the host
        elif name and any(True for _ in module.parameters(recurse=False)):
            handles.append(module.register_forward_hook(on_layer(name)))
    was_training = model.training
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    if not layers or not slots:
        raise ValueError(
            f"host has {len(layers)} parametered layer(s) and {len(slots)} seed slot(s) in its forward"
        )
    slots.sort(key=lambda s: s.slot)
    return pb.HostTopology(layers=layers, slots=slots)
