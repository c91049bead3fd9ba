"""Kasmina, the seed manager of one run: verifies and executes commands, runs the per-epoch lifecycle, and
keeps the slots' modules, alphas and optimizer groups in step with the pure aggregate (lifecycle.py).

Effects of the aggregate's events on torch objects:
- GERMINATED: the module fetched from the source is attached to the slot (inert).
- TRAINING: its parameters join the optimizer as their own param group (warm-up learning rate); the
  isolation monitor is armed.
- CULLED: the slot stops calling the module; the param group and its optimizer state are removed.
- RESETTING: module, alpha, monitor and counters are scrubbed; G5 checks that, then → DORMANT.
- FOSSILIZED: the monitor and guards are dropped; the module stays, merged, in its param group.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from google.protobuf.message import Message
from torch import nn

from domains.kasmina import lifecycle as lc
from domains.kasmina import metrics
from domains.kasmina.slot import SeedSlot, find_slots
from domains.kasmina.source import ModuleSource
from leyline import DecodeError, category_of, decode_payload, new_envelope, pb, stream_name
from leyline.errors import BadSignature, ReplayedNonce, SignatureError, StaleTimestamp, UnknownKey
from leyline.lifecycle import (
    ACTIVE_STAGES,
    CULLED,
    DORMANT,
    EMBARGOED,
    FOSSILIZED,
    GERMINATED,
    GUARDED_STAGES,
    PROBATIONARY,
    RESETTING,
    RUNNING_STAGES,
    SHADOWING,
    TERMINATED,
    TRAINING,
    LifecycleConfig,
    stage_name,
)
from leyline.seed_metrics import CONTRIBUTION_METRIC, ISOLATION_METRIC, STAGE_EPOCHS_METRIC
from leyline.signing import Verifier

SOURCE = "kasmina"
STATE_DICT_VERSION = 1
EVENT_TYPES: Mapping[type[Message], str] = {
    pb.SeedTransitioned: "SeedTransitioned",
    pb.SeedGrafted: "SeedGrafted",
    pb.IsolationViolationDetected: "IsolationViolationDetected",
    pb.CommandRejected: "CommandRejected",
}
SIGNATURE_CODES: Mapping[type[SignatureError], str] = {
    BadSignature: "bad_signature",
    ReplayedNonce: "replayed_nonce",
    StaleTimestamp: "stale_timestamp",
    UnknownKey: "unknown_key",
}
SEED_CATEGORY = "seed"


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float = math.nan


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


@dataclass(frozen=True)
class KasminaConfig:
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    warmup_epochs: int = 2  # seed learning rate ramps from warmup_start_factor × base to base
    warmup_start_factor: float = 0.1
    seed_lr: float | None = None  # base learning rate of seed groups; None: the optimizer's first group's
    training_curvature: float = 1.0  # of the seed's local loss model in TRAINING (slot._ShadowGradient)


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
        self.state = lc.KasminaState.initial(self.slots)
        self.optimizer: torch.optim.Optimizer | None = None
        self.epoch = 0
        self._pending: dict[int, nn.Module] = {}
        self._requests: dict[int, dict[str, Any]] = {}  # slot → how its module was loaded (checkpoints)
        self._last: dict[int, lc.Measurements] = {}
        self._probed: dict[tuple[str, int, tuple[int, ...]], tuple[bool, str]] = {}
        self._counts: Counter[int] = Counter()
        self._publish_counts()

    # ------------------------------------------------------------ public API

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """The trainer's optimizer; seed groups are added to and removed from it in place."""
        self.optimizer = optimizer
        for slot_no, slot in self.slots.items():
            stage = self._stage(slot_no)
            if slot.seed is None:
                continue
            if stage in RUNNING_STAGES and self._group(slot_no) is None:
                self._add_group(slot_no, self.epoch)
            if stage in GUARDED_STAGES:
                slot.monitor.arm(slot.seed, slot.device, optimizer)

    def execute(self, envelope: pb.EventEnvelope, epoch: int) -> list[pb.EventEnvelope]:
        """Verify, decide and apply a signed AdaptationCommandIssued envelope; the events to append."""
        self.epoch = epoch
        if envelope.event_type != "AdaptationCommandIssued":
            return [self._orphan_rejection(envelope, "malformed", f"not a command: {envelope.event_type}")]
        try:
            issued = decode_payload(envelope)
        except DecodeError as exc:
            return [self._orphan_rejection(envelope, "malformed", str(exc))]
        assert isinstance(issued, pb.AdaptationCommandIssued)
        command = issued.command
        command_id = command.command_id or envelope.event_id
        slot_no = command.target_slot
        if not self.state.has_slot(slot_no):
            return [
                self._orphan_rejection(
                    envelope, "unknown_slot", f"this host has no slot {slot_no}", command_id
                )
            ]
        if command_id in self.state.slot(slot_no).processed:
            return []
        rejection = self._refusal(envelope, command)
        if rejection is not None:
            code, reason = rejection
            return self._run(lc.Reject(command_id, slot_no, code, reason), envelope, command_id)
        operation = command.seed_operation
        lc_command: lc.Command
        if operation.operation == pb.SEED_OP_GERMINATE:
            lc_command = self._germinate(command_id, slot_no, epoch, operation)
        elif (
            operation.operation == pb.SEED_OP_ADVANCE
            and self._stage(slot_no) in ACTIVE_STAGES
            and slot_no not in self._last
        ):
            reason = "no measurements since germination; advance after an epoch boundary"
            lc_command = lc.Reject(command_id, slot_no, "gate_not_met", reason)
        elif operation.operation == pb.SEED_OP_ADVANCE:
            lc_command = lc.Advance(command_id, slot_no, epoch, self._last[slot_no])
        elif operation.operation == pb.SEED_OP_CULL:
            lc_command = lc.Cull(
                command_id, slot_no, epoch, command.annotations.get("reason", "cull command")
            )
        elif operation.operation == pb.SEED_OP_TERMINATE:
            lc_command = lc.Terminate(
                command_id, slot_no, epoch, command.annotations.get("reason", "terminated")
            )
        else:
            lc_command = lc.Reject(command_id, slot_no, "unsupported_command", "unknown seed operation")
        envelopes = self._run(lc_command, envelope, command_id)
        self._pending.pop(slot_no, None)
        if self.slots[slot_no].seed is None:  # a refused graft leaves no load request behind
            self._requests.pop(slot_no, None)
        if envelopes and envelopes[0].event_type != "CommandRejected":
            metrics.COMMANDS_APPLIED.inc()
        return envelopes

    def end_epoch(
        self, epoch: int, measurements: EpochMeasurements, evaluate: Evaluator
    ) -> list[pb.EventEnvelope]:
        """The automatic lifecycle at an epoch boundary: isolation, admission, gates, ramp, embargo, reset."""
        self.epoch = epoch
        envelopes: list[pb.EventEnvelope] = []
        drained: dict[int, tuple[float, int]] = {}
        for slot_no, slot in self.slots.items():
            if slot.seed is None or self._stage(slot_no) not in ACTIVE_STAGES:
                continue
            violations, grad_norm, nonfinite = slot.monitor.drain()
            drained[slot_no] = (grad_norm, nonfinite)
            for parameter, norm in violations:
                step = self._run(lc.RecordViolation(slot_no, epoch, parameter, norm))
                envelopes.extend(step)
                if self._stage(slot_no) not in ACTIVE_STAGES:
                    break
        measured: dict[int, lc.Measurements] = {}
        for s in self.state.slots:
            if s.stage in ACTIVE_STAGES:
                grad_norm, nonfinite = drained.get(s.slot, (0.0, 0))
                measured[s.slot] = self._measure(s, epoch, measurements, evaluate, grad_norm, nonfinite)
        self._last = measured
        envelopes.extend(self._run(lc.Tick(epoch, measured)))
        for s in self.state.slots:
            if s.stage == RESETTING:
                envelopes.extend(self._run(lc.Scrubbed(s.slot, epoch, self._scrub_check(s.slot))))
        for s in self.state.slots:  # the alpha ramp moves at every boundary, with or without a transition
            self.slots[s.slot].alpha.fill_(lc.alpha_at(s, epoch))
        self._sync_learning_rates(epoch)
        return envelopes

    def teardown(self, epoch: int, reason: str = "run ended") -> list[pb.EventEnvelope]:
        """TERMINATED for every slot holding a seed that is not merged (FOSSILIZED is never left)."""
        self.epoch = epoch
        envelopes = []
        for s in self.state.slots:
            if s.stage in ACTIVE_STAGES or s.stage in (EMBARGOED, RESETTING):
                envelopes.extend(self._run(lc.Terminate("", s.slot, epoch, reason)))
        return envelopes

    def seed_states(self) -> list[pb.SeedState]:
        states = []
        for s in self.state.slots:
            last = self._last.get(s.slot, lc.Measurements())
            state = pb.SeedState(
                slot=s.slot,
                seed_id=s.seed_id,
                stage=s.stage,  # type: ignore[arg-type]
                blueprint_id=s.blueprint_id,
                alpha=lc.alpha_at(s, self.epoch),
                gradient_norm=last.grad_norm if math.isfinite(last.grad_norm) else 0.0,
                age_epochs=max(0, self.epoch - s.germinated_epoch) if s.seed_id else 0,
            )
            state.metrics[ISOLATION_METRIC] = float(s.violations)
            state.metrics[STAGE_EPOCHS_METRIC] = float(max(0, self.epoch - s.stage_epoch))
            contribution = last.loss_alpha0 - last.loss_alpha1  # measured by the G3/G4 probes
            if math.isfinite(contribution):
                state.metrics[CONTRIBUTION_METRIC] = contribution
            states.append(state)
        return states

    @contextmanager
    def counterfactual(self, slot: int, alpha: float) -> Iterator[None]:
        """Force one slot's blend weight (0: seed out, 1: seed fully in) for a validation probe."""
        target = self.slots[slot]
        target.override = alpha
        try:
            yield
        finally:
            target.override = None

    def rebuild_from_log(self, envelopes: Iterable[pb.EventEnvelope]) -> lc.KasminaState:
        """The aggregate rebuilt from this run's logged seed events (replay); the live one is untouched."""
        payloads = (
            decode_payload(e)
            for e in envelopes
            if e.run_id == self.run_id and category_of(e.stream) == SEED_CATEGORY and e.event_type in _TYPES
        )
        return lc.replay(lc.KasminaState.initial(self.slots), payloads)

    def state_dict(self) -> dict[str, Any]:
        """Lifecycle, seed modules and their load requests, and the order of seed optimizer groups."""
        seeds = {}
        for slot_no, slot in self.slots.items():
            if slot.seed is not None:
                seeds[slot_no] = {**self._requests[slot_no], "weights": slot.seed.state_dict()}
        groups = []
        if self.optimizer is not None:
            groups = [_bookkeeping(g) for g in self.optimizer.param_groups if "kasmina_slot" in g]
        return {
            "version": STATE_DICT_VERSION,
            "epoch": self.epoch,
            "last_seed_id": self.state.last_seed_id,
            "slots": [{**asdict(s), "processed": sorted(s.processed)} for s in self.state.slots],
            "last_measurements": {k: asdict(v) for k, v in self._last.items()},
            "seeds": seeds,
            "groups": groups,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a checkpoint into this (fresh) manager. Call it after attach_optimizer and before
        loading the host's and the optimizer's own state dicts (they then hold the seed entries)."""
        if state.get("version") != STATE_DICT_VERSION:
            raise ValueError(f"Kasmina state version {state.get('version')} is not {STATE_DICT_VERSION}")
        for slot_no in self.slots:
            self._scrub(slot_no)
        slots = tuple(lc.SlotState(**{**s, "processed": frozenset(s["processed"])}) for s in state["slots"])
        if sorted(s.slot for s in slots) != sorted(self.slots):
            raise ValueError(
                f"checkpoint slots {[s.slot for s in slots]} differ from the host's {sorted(self.slots)}"
            )
        self.state = lc.KasminaState(slots=slots, last_seed_id=int(state["last_seed_id"]))
        self.epoch = int(state["epoch"])
        self._last = {int(k): lc.Measurements(**v) for k, v in state["last_measurements"].items()}
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
            module = loaded.to(slot.device)
            module.load_state_dict(saved["weights"])
            self._requests[slot_no] = request
            slot.seed = module
            slot.stage = self._stage(slot_no)
            if slot.stage in GUARDED_STAGES:
                slot.monitor.arm(module, slot.device, self.optimizer)
        if self.optimizer is not None:
            for group in state["groups"]:
                slot_no = group["kasmina_slot"]
                self._add_group(slot_no, group["kasmina_started"], dict(group))
        for slot_no, slot in self.slots.items():
            slot.alpha.fill_(lc.alpha_at(self.state.slot(slot_no), self.epoch))
        self._publish_counts()

    # ------------------------------------------------------------ commands

    def _refusal(self, envelope: pb.EventEnvelope, command: pb.AdaptationCommand) -> tuple[str, str] | None:
        try:
            self.verifier.verify(envelope)
        except SignatureError as exc:
            return SIGNATURE_CODES.get(type(exc), "bad_signature"), str(exc)
        if envelope.run_id != self.run_id:
            return "wrong_run", f"command for run {envelope.run_id!r}, this is run {self.run_id!r}"
        if command.command_type != pb.COMMAND_TYPE_SEED or not command.HasField("seed_operation"):
            return "unsupported_command", "Kasmina executes seed operations only"
        if command.execution_deadline_ms and self.clock_ms() > command.execution_deadline_ms:
            return "deadline_expired", f"execution deadline {command.execution_deadline_ms} ms has passed"
        return None

    def _germinate(
        self, command_id: str, slot_no: int, epoch: int, op: pb.SeedOperationCommand
    ) -> lc.Germinate:
        s = self.state.slot(slot_no)
        if s.stage != DORMANT:
            # decide() rejects on the stage before it looks at G0, which is not evaluated here.
            not_run = lc.Gate("G0", lc.Outcome.WAIT, "not evaluated: slot is not dormant")
            return lc.Germinate(command_id, slot_no, epoch, op.blueprint_id, "", not_run)
        started = time.perf_counter()
        slot = self.slots[slot_no]
        parameters = dict(op.parameters)
        verified, shape_ok, detail, artifact_hash, count = False, False, "", "", 0
        try:
            loaded, artifact_hash = self.source.load_module(
                op.blueprint_id, parameters, slot.kind, slot.shape
            )
        except Exception as exc:  # any failure of the source is a failed G0, never a broken host
            detail = f"{type(exc).__name__}: {exc}"
        else:
            verified = True
            module = loaded if _on_device(loaded, slot.device) else loaded.to(slot.device)
            probed = (artifact_hash, slot.kind, slot.shape)
            # G0's shape check is a property of the (content-addressed) artifact and the slot's shape
            known = self._probed.get(probed) if artifact_hash else None
            shape_ok, detail = known if known is not None else _shape_probe(module, slot)
            if artifact_hash:
                self._probed[probed] = (shape_ok, detail)
            count = sum(p.numel() for p in module.parameters())
            self._pending[slot_no] = module
            self._requests[slot_no] = {
                "blueprint_id": op.blueprint_id,
                "parameters": parameters,
                "artifact_hash": artifact_hash,
            }
        g0 = lc.gate_g0(verified, shape_ok, detail)
        latency_ms = (time.perf_counter() - started) * 1000
        return lc.Germinate(
            command_id,
            slot_no,
            epoch,
            op.blueprint_id,
            artifact_hash,
            g0,
            alpha_ramp_epochs=op.alpha_ramp_epochs,
            parameters=count,
            latency_ms=latency_ms,
        )

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

    # ------------------------------------------------------------ measurements

    def _measure(
        self,
        s: lc.SlotState,
        epoch: int,
        host: EpochMeasurements,
        evaluate: Evaluator,
        grad_norm: float,
        nonfinite: int,
    ) -> lc.Measurements:
        m = lc.Measurements(host_loss=host.validation_loss, grad_norm=grad_norm, nonfinite=nonfinite)
        if s.stage in (GERMINATED, TRAINING):
            with self.counterfactual(s.slot, 1.0):
                m = replace(m, seed_loss=evaluate().loss)
        probation_over = epoch - s.stage_epoch >= self.config.lifecycle.probation_epochs
        if s.stage == SHADOWING or (s.stage == PROBATIONARY and probation_over):
            with self.counterfactual(s.slot, 0.0):
                loss0 = evaluate().loss
            with self.counterfactual(s.slot, 1.0):
                loss1 = evaluate().loss
            seed = self.slots[s.slot].seed
            shape_ok = seed is not None and _shape_probe(seed, self.slots[s.slot])[0]
            m = replace(m, loss_alpha0=loss0, loss_alpha1=loss1, shape_ok=shape_ok)
        return m

    # ------------------------------------------------------------ applying events

    def _stage(self, slot_no: int) -> int:
        return self.state.slot(slot_no).stage

    def _run(
        self, command: lc.Command, cause: pb.EventEnvelope | None = None, command_id: str = ""
    ) -> list[pb.EventEnvelope]:
        payloads = lc.decide(self.state, command, self.config.lifecycle)
        envelopes = []
        for payload in payloads:
            slot_no = payload.slot  # type: ignore[attr-defined]
            correlation = command_id or self.state.slot(slot_no).origin_command
            self.state = lc.evolve(self.state, payload)
            self._effect(payload)
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

    def _effect(self, payload: Message) -> None:
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
            slot.seed = self._pending.pop(slot_no)
            slot.seed.train(slot.training)
        elif to == TRAINING:
            assert slot.seed is not None
            slot.monitor.arm(slot.seed, slot.device, self.optimizer)
            if self.optimizer is not None:
                self._add_group(slot_no, payload.epoch)
        elif to == FOSSILIZED:
            slot.monitor.disarm()
        elif to == CULLED:
            slot.monitor.disarm()
            self._remove_group(slot_no)
        elif to in (RESETTING, TERMINATED):
            self._scrub(slot_no)
        slot.stage = to
        slot.alpha.fill_(lc.alpha_at(self.state.slot(slot_no), self.epoch))

    def _scrub(self, slot_no: int) -> None:
        slot = self.slots[slot_no]
        slot.monitor.disarm()
        self._remove_group(slot_no)
        slot.seed = None
        slot.override = None
        slot.alpha.zero_()
        self._requests.pop(slot_no, None)
        self._pending.pop(slot_no, None)

    def _scrub_check(self, slot_no: int) -> dict[str, bool]:
        slot = self.slots[slot_no]
        return {
            "module": slot.seed is None and not any(True for _ in slot.parameters()),
            "optimizer_group": self._group(slot_no) is None,
            "alpha": float(slot.alpha) == 0.0,
            "monitor": not slot.monitor.armed and not slot.monitor.violations and slot.monitor.steps == 0,
        }

    # ------------------------------------------------------------ optimizer groups

    def _group(self, slot_no: int) -> dict[str, Any] | None:
        if self.optimizer is None:
            return None
        for group in self.optimizer.param_groups:
            if group.get("kasmina_slot") == slot_no:
                return group
        return None

    def _base_lr(self) -> float:
        if self.config.seed_lr is not None:
            return self.config.seed_lr
        assert self.optimizer is not None
        return float(self.optimizer.param_groups[0]["lr"])

    def _add_group(self, slot_no: int, started: int, saved: Mapping[str, Any] | None = None) -> None:
        seed = self.slots[slot_no].seed
        assert self.optimizer is not None and seed is not None
        base = float(saved["kasmina_base_lr"]) if saved else self._base_lr()
        group: dict[str, Any] = {**(saved or {}), "params": list(seed.parameters())}
        group.update(kasmina_slot=slot_no, kasmina_started=started, kasmina_base_lr=base)
        group["lr"] = self._warmup_lr(base, started, self.epoch)
        self.optimizer.add_param_group(group)

    def _remove_group(self, slot_no: int) -> None:
        if self.optimizer is None:
            return
        for index, group in enumerate(self.optimizer.param_groups):
            if group.get("kasmina_slot") == slot_no:
                for param in group["params"]:
                    self.optimizer.state.pop(param, None)
                del self.optimizer.param_groups[index]
                return

    def _warmup_lr(self, base: float, started: int, epoch: int) -> float:
        warmup = self.config.warmup_epochs
        if warmup <= 0:
            return base
        start = self.config.warmup_start_factor
        return base * min(1.0, start + (1.0 - start) * (epoch - started) / warmup)

    def _sync_learning_rates(self, epoch: int) -> None:
        if self.optimizer is None:
            return
        for group in self.optimizer.param_groups:
            if "kasmina_slot" in group:
                group["lr"] = self._warmup_lr(group["kasmina_base_lr"], group["kasmina_started"], epoch)

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


def _bookkeeping(group: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in group.items() if k != "params"}


def _on_device(module: nn.Module, device: torch.device) -> bool:
    return all(t.device == device for t in (*module.parameters(), *module.buffers()))


def _shape_probe(module: nn.Module, slot: SeedSlot) -> tuple[bool, str]:
    """Run the module on zeros of the slot's shape (eval mode, no grad): the same shape must come out."""
    probe = torch.zeros((2, *slot.shape), device=slot.device)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(probe)
    except Exception as exc:  # a module that cannot run on the slot's shape fails G0, it does not crash
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        module.train(was_training)
    if not isinstance(out, torch.Tensor) or out.shape != probe.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        return False, f"output {got} for input {tuple(probe.shape)}"
    return True, ""
