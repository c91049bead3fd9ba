"""What Kasmina measures with torch: the G0 graft probe (fetch, device, shape), the per-epoch measurements
of a slot for its gates (counterfactual validation passes) and the shape probe both use."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
from torch import nn

from domains.karn.blocks import slot_io
from domains.kasmina.gates import Gate, Measurements, gate_g0
from domains.kasmina.placement import place
from domains.kasmina.slot import SeedSlot
from domains.kasmina.source import ModuleSource
from domains.kasmina.state import SlotState
from leyline.lifecycle import BLENDING, GERMINATED, PROBATIONARY, SHADOWING, TRAINING


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float = math.nan
    losses: torch.Tensor | None = None  # per validation example, in a fixed order (paired gates)


# The trainer's validation pass: the host in eval mode under torch.no_grad(), over the validation set,
# with the slots as Kasmina has set them (Kasmina toggles a slot's alpha around a call for the
# counterfactual probes). It must not change any state (no RNG draws, no BatchNorm updates).
Evaluator = Callable[[], Evaluation]


@dataclass(frozen=True)
class EpochMeasurements:
    """The host's figures for the epoch that just ended (with every seed at its current alpha)."""

    validation_loss: float
    validation_accuracy: float = math.nan
    training_loss: float = math.nan


@contextmanager
def counterfactual(slot: SeedSlot, alpha: float) -> Iterator[None]:
    """Force one slot's blend weight (0: seed out, 1: seed fully in) for a validation probe."""
    slot.override = alpha
    try:
        yield
    finally:
        slot.override = None


def measure(
    slot: SeedSlot,
    s: SlotState,
    epoch: int,
    host: EpochMeasurements,
    evaluate: Evaluator,
    grad_norm: float,
    nonfinite: int,
    probation_epochs: int,
    best_gap: float = math.nan,
) -> Measurements:
    """A slot's measurements at an epoch boundary: the seed's loss at alpha 1 while it is GERMINATED or
    TRAINING (admission, G1, with the lowest gap since admission), the per-example losses as blended vs
    alpha 0 (G2) and the loss at alpha 1 while BLENDING, alpha 0 vs 1 per example in SHADOWING (G3) and
    once the probation window is over (G4)."""
    m = Measurements(host_loss=host.validation_loss, grad_norm=grad_norm, nonfinite=nonfinite)
    if s.stage in (GERMINATED, TRAINING):
        with counterfactual(slot, 1.0):
            m = replace(m, seed_loss=evaluate().loss, best_gap=best_gap)
    if s.stage == BLENDING:
        blended = evaluate()
        with counterfactual(slot, 0.0):
            without = evaluate()
        with counterfactual(slot, 1.0):
            full = evaluate()
        m = replace(
            m, loss_alpha0=without.loss, loss_alpha1=full.loss, blend_deltas=_deltas(blended, without)
        )
    probation_over = epoch - s.stage_epoch >= probation_epochs
    if s.stage == SHADOWING or (s.stage == PROBATIONARY and probation_over):
        with counterfactual(slot, 0.0):
            without = evaluate()
        with counterfactual(slot, 1.0):
            full = evaluate()
        shape_ok = slot.seed is not None and shape_probe(slot.seed, slot)[0]
        m = replace(
            m,
            loss_alpha0=without.loss,
            loss_alpha1=full.loss,
            shape_ok=shape_ok,
            seed_deltas=_deltas(full, without),
        )
    return m


def _deltas(with_seed: Evaluation, without: Evaluation) -> tuple[float, ...]:
    """Per validation example, loss with the seed (as given) − loss without it; () when not measured."""
    if with_seed.losses is None or without.losses is None:
        return ()
    return tuple((with_seed.losses - without.losses).tolist())


@dataclass(frozen=True)
class Graft:
    """A module fetched for a slot and its G0 verdict (module None when the source failed)."""

    module: nn.Module | None
    artifact_hash: str
    g0: Gate
    parameters: int
    latency_ms: float


class GraftProbe:
    """G0: fetch the module from the source (any failure is a failed G0, never a broken host), move it to
    the slot's device and check that it maps the slot's shape to itself. The shape verdict is a property of
    the content-addressed artifact and the slot's shape, so it is probed once per pair."""

    def __init__(self, source: ModuleSource) -> None:
        self.source = source
        self._shapes: dict[tuple[str, int, tuple[int, ...]], tuple[bool, str]] = {}

    def graft(self, slot: SeedSlot, blueprint_id: str, parameters: Mapping[str, float]) -> Graft:
        started = time.perf_counter()
        try:
            loaded, artifact_hash = self.source.load_module(blueprint_id, parameters, slot.kind, slot.shape)
        except Exception as exc:  # any failure of the source is a failed G0, never a broken host
            g0 = gate_g0(False, False, f"{type(exc).__name__}: {exc}")
            return Graft(None, "", g0, 0, (time.perf_counter() - started) * 1000)
        module = place(loaded, slot.device)
        key = (artifact_hash, slot.kind, slot.shape)
        known = self._shapes.get(key) if artifact_hash else None
        shape_ok, detail = known if known is not None else shape_probe(module, slot)
        if artifact_hash:
            self._shapes[key] = (shape_ok, detail)
        count = sum(p.numel() for p in module.parameters())
        g0 = gate_g0(True, shape_ok, detail)
        return Graft(module, artifact_hash, g0, count, (time.perf_counter() - started) * 1000)


def shape_probe(module: nn.Module, slot: SeedSlot) -> tuple[bool, str]:
    """Run the module on zeros of the slot's input shape (eval mode, no grad): the slot's output shape must
    come out (its own shape, or a widening's [K] for its tap [C, H, W])."""
    inputs, outputs = slot_io(slot.kind, slot.shape)
    probe = torch.zeros((2, *inputs), device=slot.device)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(probe)
    except Exception as exc:  # a module that cannot run on the slot's shape fails G0, it does not crash
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        module.train(was_training)
    if not isinstance(out, torch.Tensor) or out.shape != (2, *outputs):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        return False, f"output {got} for input {tuple(probe.shape)} (expected {(2, *outputs)})"
    return True, ""
