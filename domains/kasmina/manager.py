"""Kasmina, the seed manager of one run: verifies and executes commands, runs the per-epoch lifecycle, and
keeps the slots' modules, alphas and optimizer groups in step with the pure aggregate (lifecycle.py).

The intake (decode, verify, translate) is in `intake.py`, the torch effects of events in `effects.py`, the
G0 graft probe and the gates' measurements in `probes.py`; this module is the shell that runs them.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from google.protobuf.message import Message
from torch import nn

from domains.kasmina import gradients, metrics
from domains.kasmina import lifecycle as lc
from domains.kasmina.commands import Command, Germinate, RecordViolation, Scrubbed, Terminate, Tick
from domains.kasmina.config import KasminaConfig
from domains.kasmina.effects import SeedEffects, retire
from domains.kasmina.gates import Measurements, alpha_at, finite, measured_contribution
from domains.kasmina.intake import ORPHAN_CODES, Received, receive, translate
from domains.kasmina.placement import place
from domains.kasmina.probes import EpochMeasurements, Evaluator, GraftProbe, counterfactual, measure
from domains.kasmina.saved import load_records, save_records
from domains.kasmina.slot import SeedSlot, find_slots
from domains.kasmina.source import ModuleSource
from domains.kasmina.state import KasminaState, SlotState
from domains.kasmina.unfinished import teardown_reason, too_late_reason
from leyline import category_of, decode_payload, new_envelope, pb, stream_name
from leyline.lifecycle import (
    ACTIVE_STAGES,
    EMBARGOED,
    GUARDED_STAGES,
    QUARANTINE_STAGES,
    RESETTING,
    TRAINING,
    stage_name,
)
from leyline.seed_metrics import CONTRIBUTION_METRIC, ISOLATION_METRIC, STAGE_EPOCHS_METRIC
from leyline.signing import Verifier

SOURCE = "kasmina"
EVENT_TYPES: Mapping[type[Message], str] = {
    pb.SeedTransitioned: "SeedTransitioned",
    pb.SeedGrafted: "SeedGrafted",
    pb.IsolationViolationDetected: "IsolationViolationDetected",
    pb.CommandRejected: "CommandRejected",
}
SEED_CATEGORY = "seed"


class Kasmina:
    """Seed manager of one run. See domains/kasmina/__init__.py for the calling protocol."""

    def __init__(
        self,
        run_id: str,
        slots: nn.Module | Sequence[SeedSlot],
        source: ModuleSource,
        verifier: Verifier,
        config: KasminaConfig | None = None,
        *,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.run_id = run_id
        self.config = config or KasminaConfig()
        self.source = source
        self.verifier = verifier
        self.clock_ms = clock_ms
        found = find_slots(slots) if isinstance(slots, nn.Module) else sorted(slots, key=lambda s: s.slot)
        if not found:
            raise ValueError("the host declares no SeedSlot")
        self.slots: dict[int, SeedSlot] = {s.slot: s for s in found}
        for slot in found:
            slot.curvature = self.config.training_curvature
        if len(self.slots) != len(found):
            raise ValueError("duplicate slot numbers")
        if isinstance(slots, nn.Module):
            namer = _parameter_namer(slots)
            for slot in found:
                slot.monitor.namer = namer
        self.state = KasminaState.initial(self.slots)
        self.effects = SeedEffects(self.slots, self.config)
        self.grafts = GraftProbe(source)
        self.epoch = 0
        self._last: dict[int, Measurements] = {}
        self._best_gaps: dict[int, tuple[int, float]] = {}  # slot → (seed id, lowest G1 gap since admission)
        self._counts: Counter[int] = Counter()
        self._publish_counts()

    # ------------------------------------------------------------ public API

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """The trainer's optimizer; seed groups are added to and removed from it in place."""
        self.effects.attach_optimizer(optimizer, self.state, self.epoch)

    def receive(self, envelope: pb.EventEnvelope) -> Received:
        """Decode and verify a command envelope, once (intake.py): the trainer acts on a verified ROLLBACK
        itself and hands everything else to `apply`."""
        return receive(envelope, self.state, self.verifier, self.run_id)

    def apply(self, received: Received, epoch: int) -> list[pb.EventEnvelope]:
        """Decide and apply a received command; the events to append (a rejection is an event too)."""
        self.epoch = epoch
        if received.duplicate:
            return []
        slot_no = received.slot
        refusal = received.refusal
        if not self.state.has_slot(slot_no) or (refusal is not None and refusal[0] in ORPHAN_CODES):
            # a malformed envelope, or a command (a ROLLBACK) naming no slot of this host
            code, reason = refusal or ("unsupported_command", "Kasmina executes seed operations only")
            return [self._orphan_rejection(received.envelope, code, reason, received.command_id)]
        command = translate(
            received, self.state, self._last, epoch, self.clock_ms(), self._germinate, self._too_late
        )
        envelopes = self._run(command, received.envelope, received.command_id)
        self.effects.pending.pop(slot_no, None)
        if self.slots[slot_no].seed is None:  # a refused graft leaves no load request behind
            self.effects.requests.pop(slot_no, None)
        if envelopes and envelopes[0].event_type != "CommandRejected":
            metrics.COMMANDS_APPLIED.inc()
        return envelopes

    def execute(self, envelope: pb.EventEnvelope, epoch: int) -> list[pb.EventEnvelope]:
        """Verify, decide and apply a signed AdaptationCommandIssued envelope: `apply(receive(envelope))`."""
        return self.apply(self.receive(envelope), epoch)

    def end_epoch(
        self, epoch: int, measurements: EpochMeasurements, evaluate: Evaluator
    ) -> list[pb.EventEnvelope]:
        """The automatic lifecycle at an epoch boundary: isolation, admission, gates, ramp, embargo, reset."""
        self.epoch = epoch
        envelopes: list[pb.EventEnvelope] = []
        drained: dict[int, tuple[float, int]] = {}
        measured_gradients: list[pb.EventEnvelope] = []  # after the boundary's transitions
        for slot_no, slot in self.slots.items():
            if slot.seed is None or self._stage(slot_no) not in ACTIVE_STAGES:
                continue
            if gradients.in_window(self.state.slot(slot_no), epoch, self.config.gradient_window_epochs):
                measured_gradients.append(self._gradients(slot_no, epoch))
            violations, grad_norm, nonfinite = slot.monitor.drain()
            drained[slot_no] = (grad_norm, nonfinite)
            for parameter, norm in violations:
                step = self._run(RecordViolation(slot_no, epoch, parameter, norm))
                envelopes.extend(step)
                if self._stage(slot_no) not in ACTIVE_STAGES:
                    break
        measured: dict[int, Measurements] = {}
        for s in self.state.slots:
            if s.stage in ACTIVE_STAGES:
                grad_norm, nonfinite = drained.get(s.slot, (0.0, 0))
                probation = self.config.lifecycle.probation_epochs
                slot = self.slots[s.slot]
                best_gap = self._best_gap(s)
                m = measure(slot, s, epoch, measurements, evaluate, grad_norm, nonfinite, probation, best_gap)
                if s.stage == TRAINING and finite(m.seed_loss, m.host_loss):
                    gap = m.seed_loss - m.host_loss
                    self._best_gaps[s.slot] = (s.seed_id, min(gap, best_gap) if finite(best_gap) else gap)
                measured[s.slot] = m
        self._last = measured
        final = self.config.run_epochs is not None and epoch >= self.config.run_epochs
        envelopes.extend(self._run(Tick(epoch, measured, final)))
        for s in self.state.slots:
            if s.stage == RESETTING:
                envelopes.extend(self._run(Scrubbed(s.slot, epoch, self.effects.scrub_check(s.slot))))
        for s in self.state.slots:  # the alpha ramp moves at every boundary, with or without a transition
            self.slots[s.slot].alpha.fill_(alpha_at(s, epoch))
        self.effects.sync_learning_rates(epoch)
        return envelopes + measured_gradients

    def _gradients(self, slot_no: int, epoch: int) -> pb.EventEnvelope:
        state = self.state.slot(slot_no)
        payload = gradients.record(
            self.slots[slot_no].monitor, state, epoch, self.config.gradient_window_epochs
        )
        return new_envelope(
            "SeedGradientsMeasured",
            stream_name(SEED_CATEGORY, f"{self.run_id}.{slot_no}"),
            payload,
            run_id=self.run_id,
            epoch=epoch,
            correlation_id=state.origin_command,
            source=SOURCE,
        )

    def _best_gap(self, s: SlotState) -> float:
        """The lowest gap measured for the slot's current seed in TRAINING before this boundary."""
        seed_id, gap = self._best_gaps.get(s.slot, (0, math.nan))
        return gap if s.stage == TRAINING and seed_id == s.seed_id else math.nan

    def teardown(self, epoch: int, reason: str = "") -> list[pb.EventEnvelope]:
        """TERMINATED for every slot holding a seed that is not merged (FOSSILIZED is never left); without
        a reason, each says why its seed was unfinished (unfinished.py)."""
        self.epoch = epoch
        envelopes = []
        for s in self.state.slots:
            if s.stage in ACTIVE_STAGES or s.stage in (EMBARGOED, RESETTING):
                why = reason or teardown_reason(s, epoch, self.config.lifecycle)
                envelopes.extend(self._run(Terminate("", s.slot, epoch, why)))
        return envelopes

    def seed_states(self) -> list[pb.SeedState]:
        states = []
        for s in self.state.slots:
            last = self._last.get(s.slot, Measurements())
            state = pb.SeedState(
                slot=s.slot,
                seed_id=s.seed_id,
                stage=s.stage,  # type: ignore[arg-type]
                blueprint_id=s.blueprint_id,
                alpha=alpha_at(s, self.epoch),
                gradient_norm=last.grad_norm if math.isfinite(last.grad_norm) else 0.0,
                age_epochs=max(0, self.epoch - s.germinated_epoch) if s.seed_id else 0,
            )
            if s.violations:  # absent reads as 0 (leyline/seed_metrics.py)
                state.metrics[ISOLATION_METRIC] = float(s.violations)
            state.metrics[STAGE_EPOCHS_METRIC] = float(max(0, self.epoch - s.stage_epoch))
            state.outcome_reason = s.outcome_reason
            contribution = measured_contribution(last)
            if math.isfinite(contribution):
                state.metrics[CONTRIBUTION_METRIC] = contribution
            states.append(state)
        return states

    @contextmanager
    def counterfactual(self, slot: int, alpha: float) -> Iterator[None]:
        """Force one slot's blend weight (0: seed out, 1: seed fully in) for a validation probe."""
        with counterfactual(self.slots[slot], alpha):
            yield

    def rebuild_from_log(self, envelopes: Iterable[pb.EventEnvelope]) -> KasminaState:
        """The aggregate rebuilt from this run's logged seed events (replay); the live one is untouched."""
        payloads = (
            decode_payload(e)
            for e in envelopes
            if e.run_id == self.run_id and category_of(e.stream) == SEED_CATEGORY and e.event_type in _TYPES
        )
        return lc.replay(KasminaState.initial(self.slots), payloads)

    def state_dict(self) -> dict[str, Any]:
        """Lifecycle, seed modules and their load requests, and the order of seed optimizer groups."""
        seeds = {}
        for slot_no, slot in self.slots.items():
            if slot.seed is not None:
                seeds[slot_no] = {**self.effects.requests[slot_no], "weights": slot.seed.state_dict()}
        saved = save_records(self.state, self.epoch, self._last, self._best_gaps)
        return {**saved, "seeds": seeds, "groups": self.effects.groups()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a checkpoint into this (fresh) manager. Call it after attach_optimizer and before
        loading the host's and the optimizer's own state dicts (they then hold the seed entries)."""
        records = load_records(state, list(self.slots))
        for slot_no in self.slots:
            self.effects.scrub(slot_no)
        self.state, self.epoch = records.state, records.epoch
        self._last, self._best_gaps = records.last, records.best_gaps
        for slot_no, saved in state["seeds"].items():
            request = {k: v for k, v in saved.items() if k != "weights"}
            loaded, artifact_hash = self.source.load_module(
                request["blueprint_id"],
                request["parameters"],
                self.slots[slot_no].kind,
                self.slots[slot_no].shape,
            )
            if artifact_hash != request["artifact_hash"]:
                raise ValueError(
                    f"slot {slot_no}: artifact {artifact_hash} differs from the checkpoint's "
                    f"{request['artifact_hash']}"
                )
            slot = self.slots[slot_no]
            module = place(loaded, slot.device)
            module.load_state_dict(saved["weights"])
            self.effects.requests[slot_no] = request
            slot.seed = module
            slot.stage = self._stage(slot_no)
            if slot.stage in QUARANTINE_STAGES:
                retire(module)
            if slot.stage in GUARDED_STAGES:
                slot.monitor.arm(module, slot.device, self.effects.optimizer)
                window = self.config.gradient_window_epochs
                if gradients.in_window(self.state.slot(slot_no), self.epoch + 1, window):
                    slot.monitor.watch_host(self.effects.optimizer)
        if self.effects.optimizer is not None:
            for group in state["groups"]:
                slot_no = group["kasmina_slot"]
                self.effects.add_group(slot_no, group["kasmina_started"], self.epoch, dict(group))
        for slot_no, slot in self.slots.items():
            slot.alpha.fill_(alpha_at(self.state.slot(slot_no), self.epoch))
        self._publish_counts()

    # ------------------------------------------------------------ commands

    def _germinate(self, command_id: str, slot_no: int, epoch: int, op: pb.SeedOperationCommand) -> Germinate:
        """G0 for a command that passed the pre-check: the module is fetched, held until GERMINATED."""
        parameters = dict(op.parameters)
        graft = self.grafts.graft(self.slots[slot_no], op.blueprint_id, parameters)
        if graft.module is not None:
            self.effects.pending[slot_no] = graft.module
            self.effects.requests[slot_no] = {
                "blueprint_id": op.blueprint_id,
                "parameters": parameters,
                "artifact_hash": graft.artifact_hash,
            }
        return Germinate(
            command_id,
            slot_no,
            epoch,
            op.blueprint_id,
            graft.artifact_hash,
            graft.g0,
            alpha_ramp_epochs=op.alpha_ramp_epochs,
            parameters=graft.parameters,
            latency_ms=graft.latency_ms,
        )

    def _too_late(self, epoch: int, alpha_ramp_epochs: int) -> str | None:
        last, lifecycle = self.config.run_epochs, self.config.lifecycle
        return None if last is None else too_late_reason(epoch, last, lifecycle, alpha_ramp_epochs)

    def _orphan_rejection(
        self, envelope: pb.EventEnvelope, code: str, reason: str, command_id: str = ""
    ) -> pb.EventEnvelope:
        """A rejection that belongs to no slot of this host: on the command's own stream."""
        command_id = command_id or envelope.event_id
        metrics.COMMANDS_REJECTED.labels(code).inc()
        return new_envelope(
            "CommandRejected",
            stream_name("command", command_id),
            pb.CommandRejected(command_id=command_id, reason=reason, code=code),
            run_id=self.run_id,
            epoch=self.epoch,
            correlation_id=command_id,
            causation_id=envelope.event_id,
            source=SOURCE,
        )

    # ------------------------------------------------------------ applying events

    def _stage(self, slot_no: int) -> int:
        return self.state.slot(slot_no).stage

    def _run(
        self, command: Command, cause: pb.EventEnvelope | None = None, command_id: str = ""
    ) -> list[pb.EventEnvelope]:
        payloads = lc.decide(self.state, command, self.config.lifecycle)
        envelopes = []
        for payload in payloads:
            slot_no = payload.slot  # type: ignore[attr-defined]
            correlation = command_id or self.state.slot(slot_no).origin_command
            self.state = lc.evolve(self.state, payload)
            self.effects.apply(payload, self.state, self.epoch)
            envelopes.append(
                new_envelope(
                    EVENT_TYPES[type(payload)],
                    stream_name(SEED_CATEGORY, f"{self.run_id}.{slot_no}"),
                    payload,
                    run_id=self.run_id,
                    epoch=self.epoch,
                    correlation_id=correlation,
                    causation_id=cause.event_id if cause is not None else "",
                    source=SOURCE,
                )
            )
        if payloads:
            self._publish_counts()
        return envelopes

    def _publish_counts(self) -> None:
        counts = Counter(s.stage for s in self.state.slots)
        for stage in set(counts) | set(self._counts):
            delta = counts[stage] - self._counts[stage]
            if delta:
                metrics.SEEDS.labels(stage_name(stage)).inc(delta)
        self._counts = counts


_TYPES = frozenset(EVENT_TYPES.values())


def _parameter_namer(host: nn.Module) -> Callable[[torch.Tensor], str]:
    names = {id(p): name for name, p in host.named_parameters()}

    def name(tensor: torch.Tensor) -> str:
        return names.get(id(tensor), f"<tensor {tuple(tensor.shape)}>")

    return name
