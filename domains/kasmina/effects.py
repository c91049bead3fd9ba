"""The effects of the aggregate's events on torch objects: slot modules, alphas, isolation monitors and the
seeds' optimizer groups.

- GERMINATED: the module fetched from the source is attached to the slot (inert).
- TRAINING: its parameters join the optimizer as their own param group (warm-up learning rate); the
  isolation monitor is armed.
- CULLED: the slot stops calling the module; the param group and its optimizer state are removed.
- RESETTING: module, alpha, monitor and counters are scrubbed; G5 checks that, then → DORMANT.
- FOSSILIZED: the monitor and guards are dropped; the module stays, merged, in its param group.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from google.protobuf.message import Message
from torch import nn

from domains.kasmina import metrics
from domains.kasmina.config import KasminaConfig
from domains.kasmina.gates import alpha_at
from domains.kasmina.slot import SeedSlot
from domains.kasmina.state import KasminaState
from leyline import pb
from leyline.lifecycle import (
    CULLED,
    FOSSILIZED,
    GERMINATED,
    GUARDED_STAGES,
    RESETTING,
    RUNNING_STAGES,
    TERMINATED,
    TRAINING,
    stage_name,
)
from leyline.schedule import lr_factor


class SeedEffects:
    """Keeps one run's slots and seed optimizer groups in step with the aggregate's events."""

    def __init__(self, slots: Mapping[int, SeedSlot], config: KasminaConfig) -> None:
        self.slots = slots
        self.config = config
        self.optimizer: torch.optim.Optimizer | None = None
        self.pending: dict[int, nn.Module] = {}  # slot → module fetched for a graft not yet applied
        self.requests: dict[int, dict[str, Any]] = {}  # slot → how its module was loaded (checkpoints)

    def attach_optimizer(self, optimizer: torch.optim.Optimizer, state: KasminaState, epoch: int) -> None:
        self.optimizer = optimizer
        for slot_no, slot in self.slots.items():
            stage = state.slot(slot_no).stage
            if slot.seed is None:
                continue
            if stage in RUNNING_STAGES and self.group(slot_no) is None:
                self.add_group(slot_no, epoch, epoch)
            if stage in GUARDED_STAGES:
                slot.monitor.arm(slot.seed, slot.device, optimizer)

    def apply(self, payload: Message, state: KasminaState, epoch: int) -> None:
        """The torch side of one event the aggregate has just folded into `state`."""
        if isinstance(payload, pb.CommandRejected):
            metrics.COMMANDS_REJECTED.labels(payload.code).inc()
            return
        if isinstance(payload, pb.IsolationViolationDetected):
            metrics.ISOLATION_VIOLATIONS.inc()
            return
        if isinstance(payload, pb.SeedGrafted):
            metrics.GRAFT_LATENCY.observe(payload.latency_ms / 1000)
            return
        assert isinstance(payload, pb.SeedTransitioned)
        metrics.TRANSITIONS.labels(stage_name(payload.from_stage), stage_name(payload.to_stage)).inc()
        slot_no, to = payload.slot, payload.to_stage
        slot = self.slots[slot_no]
        if to == GERMINATED:
            slot.seed = self.pending.pop(slot_no)
            slot.seed.train(slot.training)
        elif to == TRAINING:
            assert slot.seed is not None
            slot.monitor.arm(slot.seed, slot.device, self.optimizer)
            if self.config.gradient_window_epochs > 0:
                slot.monitor.watch_host(self.optimizer)
            if self.optimizer is not None:
                self.add_group(slot_no, payload.epoch, epoch)
        elif to == FOSSILIZED:
            slot.monitor.disarm()
        elif to == CULLED:
            slot.monitor.disarm()
            self.remove_group(slot_no)
            retire(slot.seed)
        elif to in (RESETTING, TERMINATED):
            self.scrub(slot_no)
        slot.stage = to
        slot.alpha.fill_(alpha_at(state.slot(slot_no), epoch))

    def scrub(self, slot_no: int) -> None:
        slot = self.slots[slot_no]
        slot.monitor.disarm()
        self.remove_group(slot_no)
        slot.seed = None
        slot.override = None
        slot.alpha.zero_()
        self.requests.pop(slot_no, None)
        self.pending.pop(slot_no, None)

    def scrub_check(self, slot_no: int) -> dict[str, bool]:
        """G5's checks of a RESETTING slot."""
        slot = self.slots[slot_no]
        return {
            "module": slot.seed is None and not any(True for _ in slot.parameters()),
            "optimizer_group": self.group(slot_no) is None,
            "alpha": float(slot.alpha) == 0.0,
            "monitor": not slot.monitor.armed and not slot.monitor.violations and slot.monitor.steps == 0,
        }

    # ------------------------------------------------------------ optimizer groups

    def group(self, slot_no: int) -> dict[str, Any] | None:
        if self.optimizer is None:
            return None
        for group in self.optimizer.param_groups:
            if group.get("kasmina_slot") == slot_no:
                return group
        return None

    def groups(self) -> list[dict[str, Any]]:
        """The seed groups' bookkeeping (everything but the parameters), in optimizer order."""
        if self.optimizer is None:
            return []
        return [
            {k: v for k, v in g.items() if k != "params"}
            for g in self.optimizer.param_groups
            if "kasmina_slot" in g
        ]

    def add_group(
        self, slot_no: int, started: int, epoch: int, saved: Mapping[str, Any] | None = None
    ) -> None:
        seed = self.slots[slot_no].seed
        assert self.optimizer is not None and seed is not None
        base = float(saved["kasmina_base_lr"]) if saved else self._base_lr()
        group: dict[str, Any] = {**(saved or {}), "params": list(seed.parameters())}
        group.update(kasmina_slot=slot_no, kasmina_started=started, kasmina_base_lr=base)
        group["lr"] = self._warmup_lr(base, started, epoch)
        self.optimizer.add_param_group(group)

    def remove_group(self, slot_no: int) -> None:
        if self.optimizer is None:
            return
        for index, group in enumerate(self.optimizer.param_groups):
            if group.get("kasmina_slot") == slot_no:
                for param in group["params"]:
                    self.optimizer.state.pop(param, None)
                del self.optimizer.param_groups[index]
                return

    def sync_learning_rates(self, epoch: int) -> None:
        if self.optimizer is None:
            return
        for group in self.optimizer.param_groups:
            if "kasmina_slot" in group:
                group["lr"] = self._warmup_lr(group["kasmina_base_lr"], group["kasmina_started"], epoch)

    def _base_lr(self) -> float:
        if self.config.seed_lr is not None:
            return self.config.seed_lr
        assert self.optimizer is not None
        first = self.optimizer.param_groups[0]
        return float(first.get("initial_lr", first["lr"]))

    def _warmup_lr(self, base: float, started: int, epoch: int) -> float:
        """The rate of the epoch after boundary `epoch` for a seed that started training at `started`: the
        warm-up ramp times the schedule over the epochs from its start to the run's end."""
        end = self.config.run_epochs
        schedule = self.config.lr_schedule
        scheduled = base if end is None else base * lr_factor(schedule, epoch + 1, started, end)
        warmup = self.config.warmup_epochs
        if warmup <= 0:
            return scheduled
        start = self.config.warmup_start_factor
        return scheduled * min(1.0, start + (1.0 - start) * (epoch - started) / warmup)


def retire(seed: nn.Module | None) -> None:
    """A culled seed stays attached through its quarantine until the slot is scrubbed, but the slot no
    longer calls it and no optimizer group holds it: its parameters stop requiring gradients, so that
    they count neither as the model's trainable parameters (EpochCompleted, Tamiyo's budget, Simic's
    parameter rent) nor for autograd."""
    if seed is not None:
        seed.requires_grad_(False)
