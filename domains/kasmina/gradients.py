"""The gradient window: how much gradient reaches a newborn seed, per parameter, beside the host.

New units may get too little gradient after admission ("backward-starved"). For the first
`KasminaConfig.gradient_window_epochs` epochs after a germination, each slot's isolation monitor also
accumulates the host's gradient norm at every optimizer step (on the device, beside the seed's, with no
per-step synchronisation; slot.py), and at each boundary Kasmina records a SeedGradientsMeasured on the
seed's stream: the RMS over the epoch's steps of the seed's and of the host's total gradient norm, and each
divided by the square root of its parameter count (the norm per parameter, comparable across sizes).
Outside the window the host is not measured, so the cost stays bounded.
"""

from __future__ import annotations

import math

from domains.kasmina.slot import IsolationMonitor
from domains.kasmina.state import SlotState
from leyline import pb
from leyline.lifecycle import GUARDED_STAGES


def in_window(slot: SlotState, epoch: int, window_epochs: int) -> bool:
    """Whether the boundary of `epoch` falls in the slot's seed's gradient window."""
    age = epoch - slot.germinated_epoch
    return slot.seed_id > 0 and slot.stage in GUARDED_STAGES and 0 < age <= window_epochs


def per_parameter(norm: float, parameters: int) -> float:
    return norm / math.sqrt(parameters) if parameters > 0 else 0.0


def measured(
    slot: SlotState,
    epoch: int,
    seed: tuple[float, int],
    host: tuple[float, int],
    steps: int,
) -> pb.SeedGradientsMeasured:
    """The window's record for one boundary; `seed` and `host` are (RMS gradient norm, parameters)."""
    (seed_norm, seed_parameters), (host_norm, host_parameters) = seed, host
    seed_norm = seed_norm if math.isfinite(seed_norm) else 0.0
    return pb.SeedGradientsMeasured(
        slot=slot.slot,
        seed_id=slot.seed_id,
        epoch=epoch,
        stage=slot.stage,  # type: ignore[arg-type]
        epochs_since_germination=epoch - slot.germinated_epoch,
        steps=steps,
        seed_gradient_norm=seed_norm,
        host_gradient_norm=host_norm,
        seed_parameters=seed_parameters,
        host_parameters=host_parameters,
        seed_norm_per_parameter=per_parameter(seed_norm, seed_parameters),
        host_norm_per_parameter=per_parameter(host_norm, host_parameters),
    )


def record(
    monitor: IsolationMonitor, slot: SlotState, epoch: int, window_epochs: int
) -> pb.SeedGradientsMeasured:
    """Read (and reset) the host side of the monitor for this boundary, before its seed side is drained;
    after the window's last boundary the host stops being measured."""
    host_norm, steps = monitor.drain_host()
    seed = (monitor.rms_norm(), sum(p.numel() for p in monitor.params))
    host = (host_norm, sum(p.numel() for p in monitor.host_params))
    if epoch - slot.germinated_epoch >= window_epochs:
        monitor.watch_host(None)
    return measured(slot, epoch, seed, host, steps)
