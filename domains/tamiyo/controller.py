"""Tamiyo's controller: the edge around a pure policy (Tolaria's `Controller` protocol).

Each `decide` builds an `Observation` from the epoch's packet and context and runs the policy for at most
`decision_timeout_s` (default 2 s; domains/tamiyo/deadline.py). An overrunning policy's result is
discarded (it only ever returns payloads from an immutable state) and a policy that raises is contained:
the decision is a safe no-op and Tamiyo enters conservative mode.
The payloads are then folded into the state (`domains.tamiyo.state.evolve`) and wrapped in envelopes:

- DecisionMade and ConservativeModeChanged on `decision-<run_id>`;
- AdaptationCommandIssued on `command-<command_id>`, event_id = command id, HMAC-signed, returned as
  `ControllerOutput.command` (not in `events`: Tolaria hands it to Kasmina and appends it);
- FieldReportIssued on `report-<run_id>`.

What a command causes carries correlation_id = the command id; causation_id is the event that caused it
(the decision for the command and a mode change, the command for its field report).

Inputs read from the packet: `metrics["grad_norm"]` (host gradient norm), `hardware` memory for memory
pressure; from the context: seeds, catalogue (the controller's own `catalogue` when the context has none),
parameters, the previous hook's duration and the run's hook budget, and the command ids applied at the
previous boundary. Per slot, `SeedState.metrics["headroom"]` ranks slots for germination (falling back
to the slot's gradient norm); `metrics["stage_epochs"]`, `metrics["isolation_violations"]` and
`metrics["contribution"]` are gate evidence.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from google.protobuf.message import Message

from domains.tamiyo import metrics
from domains.tamiyo.commands import default_parameters
from domains.tamiyo.deadline import Policy, PolicyRunner
from domains.tamiyo.observation import HOOK_ACTIONS, Observation, graftable, observation_summary
from domains.tamiyo.policy import HeuristicPolicy
from domains.tamiyo.risk import effective_level, from_pb_level, to_pb_level
from domains.tamiyo.state import TamiyoState, evolve, from_dict, to_dict
from leyline import new_envelope, pb, stream_name
from leyline.controller import ControllerContext, ControllerOutput
from leyline.lifecycle import LifecycleConfig
from leyline.signing import Signer

DEFAULT_DECISION_TIMEOUT_S = 2.0
SOURCE = "tamiyo"

# (descriptor, slot) → parameters a graft of that blueprint adds at the slot, None if it cannot go there.
ParameterEstimator = Callable[[pb.BlueprintDescriptor, int], int | None]


class TamiyoController:
    def __init__(
        self,
        run_id: str,
        signer: Signer,
        policy: Policy | None = None,
        *,
        decision_timeout_s: float = DEFAULT_DECISION_TIMEOUT_S,
        parameter_estimator: ParameterEstimator | None = None,
        slot_kinds: Mapping[int, int] | None = None,
        catalogue: Sequence[pb.BlueprintDescriptor] = (),
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        if decision_timeout_s <= 0:
            raise ValueError(f"decision timeout must be positive, got {decision_timeout_s}")
        self.run_id = run_id
        self.signer = signer
        self.policy: Policy = policy or HeuristicPolicy()
        self.policy_name = self.policy.name
        self.policy_version = self.policy.version
        self.measures_headroom = True  # the heuristic germinates where headroom is largest
        self.decision_timeout_s = decision_timeout_s
        self.parameter_estimator = parameter_estimator
        self.slot_kinds = dict(slot_kinds or {})
        self.catalogue = tuple(catalogue)
        self.state = TamiyoState()
        self._new_id = new_id
        self._clock_ns = clock_ns
        self._costs: dict[tuple[str, int], int | None] = {}
        self._runner = PolicyRunner()
        self._warm_costs()

    # ------------------------------------------------------------------ Controller protocol

    def decide(self, packet: pb.SystemStatePacket, context: ControllerContext) -> ControllerOutput:
        started = time.perf_counter()
        observation = self.observe(packet, context)
        payloads, failure = self._run_policy(observation)
        if failure is not None:
            metrics.DECISION_FAILURES.labels(cause=failure[0]).inc()
            payloads = self._fallback(observation, failure[1])
        latency_ms = (time.perf_counter() - started) * 1000.0
        metrics.DECISION_LATENCY.observe(latency_ms / 1000.0)
        return self._emit(payloads, observation, latency_ms)

    def enter_conservative_mode(self, reason: str, epoch: int) -> list[pb.EventEnvelope]:
        """Tolaria's overrun of this boundary's hook. When this boundary issued a seed command of
        Tamiyo's own, the overrun is that command's cost (observation.hook_action_cost) and the mode is
        left as it is: the next decision reads the latency as a signal unless Kasmina applied the command."""
        if self.state.conservative or self.issued_hook_action(epoch):
            return []
        change = pb.ConservativeModeChanged(
            active=True,
            reason=reason,
            risk_level=to_pb_level(effective_level(self.state.raw_levels)),
            epoch=epoch,
        )
        self._apply(change)
        return [self._wrap(change, epoch=epoch)]

    def issued_hook_action(self, epoch: int) -> bool:
        """Whether the decision of this epoch's boundary issued a command Kasmina carries out in the hook."""
        return any(c.epoch == epoch and c.action in HOOK_ACTIONS for c in self.state.pending)

    def state_dict(self) -> Mapping[str, Any]:
        return {
            "policy_name": self.policy_name,
            "policy_version": self.policy_version,
            "state": to_dict(self.state),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.state = from_dict(state["state"])
        metrics.CONSERVATIVE_MODE.set(1 if self.state.conservative else 0)

    # ------------------------------------------------------------------ edge

    def observe(self, packet: pb.SystemStatePacket, context: ControllerContext) -> Observation:
        hardware = packet.hardware
        pressure = hardware.memory_used_gb / hardware.memory_total_gb if hardware.memory_total_gb > 0 else 0.0
        seeds = tuple(context.seeds) or tuple(packet.seeds)
        catalogue = tuple(context.catalogue) or self.catalogue
        return Observation(
            run_id=self.run_id,
            epoch=packet.epoch,
            packet_id=packet.packet_id,
            training_loss=packet.training_loss,
            validation_loss=packet.validation_loss,
            validation_accuracy=packet.validation_accuracy,
            grad_norm=packet.metrics.get("grad_norm", 0.0),
            memory_pressure=pressure,
            hook_ms=context.last_hook_ms,
            hook_budget_ms=context.hook_budget_ms,
            lifecycle=context.lifecycle,
            run_epochs=context.run_epochs,
            parameters=context.parameters,
            seeds=seeds,
            catalogue=catalogue,
            applied_commands=tuple(context.applied_commands),
            command_id=self._new_id(),
            now_ms=self._clock_ns() // 1_000_000,
            blueprint_costs=self._blueprint_costs(seeds, catalogue),
            slot_kinds=self.slot_kinds,
        )

    def likely_grafts(
        self, parameters: int, lifecycle: LifecycleConfig
    ) -> list[tuple[str, dict[str, float], int]]:
        """(blueprint, template parameters, slot) of the grafts the heuristic would make first, at a host of
        `parameters` with every slot dormant: what the composition root compiles ahead of the first
        boundary. Another policy names none."""
        if not isinstance(self.policy, HeuristicPolicy):
            return []
        seeds = tuple(
            pb.SeedState(slot=slot, stage=pb.SEED_STAGE_DORMANT) for slot in sorted(self.slot_kinds)
        )
        observation = Observation(
            run_id=self.run_id,
            epoch=0,
            packet_id=0,
            training_loss=0.0,
            validation_loss=0.0,
            validation_accuracy=0.0,
            grad_norm=0.0,
            memory_pressure=0.0,
            hook_ms=0.0,
            parameters=parameters,
            seeds=seeds,
            catalogue=self.catalogue,
            applied_commands=(),
            command_id="",
            now_ms=0,
            blueprint_costs=self._blueprint_costs(seeds, self.catalogue),
            slot_kinds=self.slot_kinds,
            lifecycle=lifecycle,
        )
        picks = self.policy.likely_grafts(observation)
        return [(descriptor.blueprint_id, default_parameters(descriptor), slot) for slot, descriptor in picks]

    def _warm_costs(self) -> None:
        """Estimate every known (blueprint, slot) now, so the first decision does not pay for it."""
        dormant = tuple(pb.SeedState(slot=slot, stage=pb.SEED_STAGE_DORMANT) for slot in self.slot_kinds)
        self._blueprint_costs(dormant, self.catalogue)

    def _blueprint_costs(
        self, seeds: tuple[pb.SeedState, ...], catalogue: tuple[pb.BlueprintDescriptor, ...]
    ) -> dict[tuple[str, int], int]:
        """Estimates for graftable blueprints at dormant slots, cached: they never change in a run."""
        if self.parameter_estimator is None:
            return {}
        costs: dict[tuple[str, int], int] = {}
        for seed in seeds:
            if seed.stage != pb.SEED_STAGE_DORMANT:
                continue
            for descriptor in catalogue:
                if not graftable(descriptor):
                    continue
                key = (descriptor.blueprint_id, seed.slot)
                if key not in self._costs:
                    self._costs[key] = self.parameter_estimator(descriptor, seed.slot)
                cost = self._costs[key]
                if cost is not None:
                    costs[key] = cost
        return costs

    def _run_policy(self, observation: Observation) -> tuple[list[Message], tuple[str, str] | None]:
        return self._runner.run(self.policy, self.state, observation, self.decision_timeout_s)

    def _fallback(self, observation: Observation, reason: str) -> list[Message]:
        """The safe no-op of a failed decision; it enters conservative mode."""
        level = effective_level(self.state.raw_levels)
        decision = pb.DecisionMade(
            policy_name=self.policy_name,
            policy_version=self.policy_version,
            inputs_summary=observation_summary(observation),
            risk_level=to_pb_level(level),
            action="noop",
            conservative=True,
            reason=f"safe no-op: {reason}",
            packet_id=observation.packet_id,
            applied_command_ids=observation.applied_commands,
            epoch=observation.epoch,
        )
        payloads: list[Message] = [decision]
        if not self.state.conservative:
            payloads.append(
                pb.ConservativeModeChanged(
                    active=True, reason=reason, risk_level=to_pb_level(level), epoch=observation.epoch
                )
            )
        return payloads

    def _emit(self, payloads: list[Message], observation: Observation, latency_ms: float) -> ControllerOutput:
        output = ControllerOutput()
        epoch = observation.epoch
        decision_event_id = ""
        for payload in payloads:
            if isinstance(payload, pb.DecisionMade):
                payload.latency_ms = latency_ms
                envelope = self._wrap(payload, epoch=epoch, correlation_id=payload.command_id)
                decision_event_id = envelope.event_id
                metrics.DECISIONS.labels(action=payload.action or "noop").inc()
                metrics.RISK_LEVEL.set(from_pb_level(payload.risk_level))
                output.events.append(envelope)
            elif isinstance(payload, pb.AdaptationCommandIssued):
                payload.decision_event_id = decision_event_id
                command_id = payload.command.command_id
                envelope = new_envelope(
                    "AdaptationCommandIssued",
                    stream_name("command", command_id),
                    payload,
                    run_id=self.run_id,
                    epoch=epoch,
                    correlation_id=command_id,
                    causation_id=decision_event_id,
                    source=SOURCE,
                    priority=pb.MESSAGE_PRIORITY_HIGH,
                    event_id=command_id,
                    occurred_at_ns=self._clock_ns(),
                )
                output.command = self.signer.sign(envelope)
                metrics.COMMANDS.labels(action=payload.command.annotations.get("action", "")).inc()
            elif isinstance(payload, pb.FieldReportIssued):
                command_id = payload.report.command_id
                output.events.append(
                    self._wrap(payload, epoch=epoch, correlation_id=command_id, causation_id=command_id)
                )
                outcome = pb.FieldReportOutcome.Name(payload.report.outcome)
                metrics.FIELD_REPORTS.labels(
                    outcome=outcome.removeprefix("FIELD_REPORT_OUTCOME_").lower()
                ).inc()
            else:
                output.events.append(self._wrap(payload, epoch=epoch, causation_id=decision_event_id))
            self._apply(payload)
        return output

    def _apply(self, payload: Message) -> None:
        self.state = evolve(self.state, payload)
        if isinstance(payload, pb.ConservativeModeChanged):
            metrics.CONSERVATIVE_MODE.set(1 if payload.active else 0)
            metrics.CONSERVATIVE_CHANGES.labels(active=str(payload.active).lower()).inc()

    def _wrap(
        self, payload: Message, *, epoch: int, correlation_id: str = "", causation_id: str = ""
    ) -> pb.EventEnvelope:
        event_type = type(payload).__name__
        category = "report" if isinstance(payload, pb.FieldReportIssued) else "decision"
        return new_envelope(
            event_type,
            stream_name(category, self.run_id),
            payload,
            run_id=self.run_id,
            epoch=epoch,
            correlation_id=correlation_id,
            causation_id=causation_id,
            source=SOURCE,
            occurred_at_ns=self._clock_ns(),
        )
