"""LoRA adapters (peft) over a frozen base GNN policy.

peft wraps only `torch.nn.Linear` (it rejects torch-geometric's own `Linear`); the policy's message passing
is written with `torch.nn.Linear` throughout (`domains.tamiyo.gnn.layers`), so `attach` injects adapters
into the modules `target_modules` names explicitly (the encoders and the message-passing linears; never the
heads, which `all-linear` would also take) and freezes everything else: at attach time LoRA's B is zero, so
the output equals the base policy's, and only the adapter's parameters train. Adapters are saved and swapped
by state dict (`adapter_state` / `load_adapter`), not by peft's hotswap, which fails with `modules_to_save`
(peft#3581). peft imports transformers (seconds): import this module only when `lora` is on.
"""

from __future__ import annotations

import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import nn

from domains.simic.config import AdapterConfig
from domains.tamiyo.gnn.network import PolicyNetwork

ADAPTER_KEY = "lora_"


def target_modules(network: PolicyNetwork) -> list[str]:
    """The linears adapters go into: the encoders and message passing, by full name (no head)."""
    return [
        name
        for name, module in network.named_modules()
        if isinstance(module, nn.Linear) and name.startswith(("encoders.", "sage.", "gat."))
    ]


def attach(network: PolicyNetwork, config: AdapterConfig) -> PolicyNetwork:
    """`network` (modified in place) with adapters on `target_modules`; only the adapters require grad."""
    settings = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=target_modules(network),
        bias="none",
    )
    adapted = inject_adapter_in_model(settings, network)
    assert adapted is network
    for name, parameter in network.named_parameters():
        parameter.requires_grad_(ADAPTER_KEY in name)
    return network


def adapter_state(network: PolicyNetwork) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in network.state_dict().items() if ADAPTER_KEY in k}


def load_adapter(network: PolicyNetwork, state: dict[str, torch.Tensor]) -> None:
    """Swap an adapter in by state dict; refuses one whose keys differ from the network's adapter."""
    expected = {k for k in network.state_dict() if ADAPTER_KEY in k}
    if set(state) != expected:
        raise ValueError(f"adapter keys differ: {sorted(set(state) ^ expected)[:4]}")
    network.load_state_dict(state, strict=False)
