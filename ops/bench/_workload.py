"""Realistic event logs for projection tests and benchmarks: runs as Tolaria, Kasmina and Tamiyo write them.

A simulated run starts, then per epoch appends EpochCompleted, EpochHookTimed, the controller's
DecisionMade and, when it acts, AdaptationCommandIssued followed by the seed's transitions, a graft and
later a field report; checkpoints every few epochs and, now and then, a rollback to the last checkpoint
whose RollbackCompleted supersedes the run's events since. Blueprint registration and compile jobs,
policy training and activation, alerts and telemetry (which no read model consumes) are mixed in.

Positions are assigned as a single writer appending to an empty log would get them (`first_position`
onwards), which lets a RollbackCompleted name the positions it supersedes.

Longer than ~400 lines on purpose: one `Simulator` whose generators share a single log's positions, clock,
ids and random stream; split across modules, each part would reach into that shared state.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from google.protobuf.message import Message

from leyline import new_envelope, pb
from leyline.lifecycle import CULL_PATH, GATE_INTO, STAGE_PATH


@dataclass
class _Slot:
    seed_id: int = 0
    stage: int = pb.SEED_STAGE_DORMANT
    blueprint_id: str = ""
    command_id: str = ""
    germinated_epoch: int = 0


@dataclass
class _Run:
    run_id: str
    epoch: int = 0
    slots: list[_Slot] = field(default_factory=lambda: [_Slot() for _ in range(3)])
    seeds: int = 0
    last_checkpoint: tuple[int, int] | None = None  # (epoch, position)
    checkpoint_slots: list[_Slot] = field(default_factory=list)
    first_position: int = 0


class Simulator:
    def __init__(
        self, seed: int = 0, first_position: int = 1, time_ns: int = 1_790_000_000_000_000_000
    ) -> None:
        self.random = random.Random(seed)
        self.position = first_position - 1
        self.time_ns = time_ns
        self.counter = 0
        self.policy_version = "heuristic-1.0"

    def _id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter:08x}"

    def _event(
        self,
        event_type: str,
        stream: str,
        payload: Message,
        run: _Run | None = None,
        correlation_id: str = "",
        causation_id: str = "",
    ) -> pb.EventEnvelope:
        self.position += 1
        self.time_ns += self.random.randint(1_000_000, 50_000_000)
        envelope = new_envelope(
            event_type,
            stream,
            payload,
            run_id=run.run_id if run else "",
            epoch=run.epoch if run else None,
            correlation_id=correlation_id,
            causation_id=causation_id,
            event_id=self._id("e"),
            occurred_at_ns=self.time_ns,
        )
        envelope.global_position = self.position
        return envelope

    # ------------------------------------------------------------ catalogue, policies, alerts

    def catalogue(self, blueprints: int = 50) -> Iterator[pb.EventEnvelope]:
        for number in range(1, blueprints + 1):
            blueprint_id = f"BP{number:03d}"
            tier = (
                pb.BLUEPRINT_TIER_SAFE
                if number <= 35
                else pb.BLUEPRINT_TIER_EXPERIMENTAL
                if number <= 42
                else pb.BLUEPRINT_TIER_ADVERSARIAL
            )
            descriptor = pb.BlueprintDescriptor(
                blueprint_id=blueprint_id,
                name=f"template_{number}",
                tier=tier,
                risk=min(1.0, number / 50),
                curriculum_stage=min(6, number // 7),
                slot_kinds=[pb.SLOT_KIND_CONV2D],
                quarantine_only=tier == pb.BLUEPRINT_TIER_ADVERSARIAL,
            )
            descriptor.parameter_ranges["hidden"].CopyFrom(
                pb.ParameterRange(min=4, max=64, default=16, integer=True)
            )
            yield self._event(
                "BlueprintRegistered",
                f"blueprint-{blueprint_id}",
                pb.BlueprintRegistered(descriptor=descriptor),
            )
            yield from self.compile(blueprint_id)

    def compile(self, blueprint_id: str) -> Iterator[pb.EventEnvelope]:
        job_id = self._id("job")
        stream = f"compile-{job_id}"
        queued = pb.CompileJobQueued(
            job_id=job_id, blueprint_id=blueprint_id, slot_shape=[8, 4, 4], strategy="export", max_attempts=3
        )
        yield self._event("CompileJobQueued", stream, queued)
        attempt = 1
        yield self._event("CompileJobStarted", stream, pb.CompileJobStarted(job_id=job_id, attempt=attempt))
        while self.random.random() < 0.2 and attempt < 3:
            failed = pb.CompileJobFailed(
                job_id=job_id, attempt=attempt, error="export failed", will_retry=True
            )
            yield self._event("CompileJobFailed", stream, failed)
            attempt += 1
            yield self._event(
                "CompileJobStarted", stream, pb.CompileJobStarted(job_id=job_id, attempt=attempt)
            )
        artifact_hash = f"{self.random.getrandbits(256):064x}"
        succeeded = pb.CompileJobSucceeded(
            job_id=job_id, attempt=attempt, artifact_hash=artifact_hash, duration_ms=210
        )
        yield self._event("CompileJobSucceeded", stream, succeeded)
        stored = pb.ArtifactStored(
            artifact_hash=artifact_hash,
            blueprint_id=blueprint_id,
            size_bytes=180_000,
            strategy="export",
            job_id=job_id,
        )
        yield self._event("ArtifactStored", f"artifact-{artifact_hash}", stored)

    def policy_update(self) -> Iterator[pb.EventEnvelope]:
        version = self._id("policy-v")
        update = pb.PolicyUpdate(
            version=version,
            policy_name="hetero-gnn",
            content_hash=f"{self.random.getrandbits(256):064x}",
            parent_version=self.policy_version,
            lora=True,
        )
        update.training_metrics["reward"] = self.random.random()
        stream = f"policy-{version}"
        yield self._event(
            "PolicyTrained", stream, pb.PolicyTrained(update=update, steps=2048, experiences=64)
        )
        passed = self.random.random() < 0.7
        validation = pb.PolicyValidation(
            version=version, passed=passed, reason="" if passed else "regression 7 %"
        )
        validation.checks["regression"] = 0.01 if passed else 0.07
        yield self._event("PolicyValidated" if passed else "PolicyRejected", stream, validation)
        if passed:
            yield self._event("PolicyPublished", stream, pb.PolicyPublished(update=update))
            activation = pb.PolicyActivation(
                version=version, previous_version=self.policy_version, reason="validated"
            )
            yield self._event("PolicyActivated", stream, activation)
            self.policy_version = version

    def alert(self) -> Iterator[pb.EventEnvelope]:
        name = self.random.choice(
            ["training_latency_high", "oona_queue_depth", "tezzeret_compile_retry_high"]
        )
        alert = pb.Alert(
            name=name, severity="warning", summary=f"{name} above threshold", value=self.random.random()
        )
        yield self._event("AlertFired", f"alert-{name}", alert)
        yield self._event("AlertResolved", f"alert-{name}", alert)

    # ------------------------------------------------------------ runs

    def run(
        self, epochs: int, run_id: str | None = None, rollback_every: int = 400
    ) -> Iterator[pb.EventEnvelope]:
        run = _Run(run_id or self._id("r"))
        stream = f"run-{run.run_id}"
        started = pb.RunStarted(
            run_id=run.run_id, config_json=f'{{"epochs": {epochs}}}', seed=7, host_model="cnn_lite"
        )
        first = self._event("RunStarted", stream, started, run)
        run.first_position = first.global_position
        yield first
        for _ in range(epochs):
            run.epoch += 1
            yield from self._epoch(run)
            if run.epoch % 5 == 0:
                yield self._checkpoint(run)
            elif rollback_every and run.last_checkpoint and self.random.random() < 1 / rollback_every:
                yield from self._rollback(run)
        completed = pb.RunCompleted(
            run_id=run.run_id, epochs=run.epoch, test_accuracy=0.97, parameters=38_000
        )
        yield self._event("RunCompleted", stream, completed, run)

    def _epoch(self, run: _Run) -> Iterator[pb.EventEnvelope]:
        stream = f"run-{run.run_id}"
        packet = pb.SystemStatePacket(
            epoch=run.epoch,
            global_step=run.epoch * 28,
            training_loss=1.0 / run.epoch,
            training_accuracy=1 - 0.5 / run.epoch,
            validation_loss=1.1 / run.epoch,
            validation_accuracy=1 - 0.6 / run.epoch,
            run_id=run.run_id,
            packet_id=self.random.getrandbits(64),
        )
        packet.metrics["lr"] = 0.01
        packet.metrics["grad_norm"] = self.random.random() * 3
        for slot_number, slot in enumerate(run.slots):
            packet.seeds.add(
                slot=slot_number, seed_id=slot.seed_id, stage=slot.stage, blueprint_id=slot.blueprint_id
            )
        epoch_event = self._event(
            "EpochCompleted", stream, pb.EpochCompleted(state=packet, epoch_wall_ms=61.0), run
        )
        yield epoch_event
        hook = pb.EpochHookTimed(
            epoch=run.epoch, assembly_ms=1.2, controller_ms=3.1, command_ms=0.4, total_ms=4.9
        )
        yield self._event("EpochHookTimed", stream, hook, run)
        if self.random.random() < 0.3:
            telemetry = pb.TelemetryPacket(source="tolaria", timestamp_ms=self.time_ns // 1_000_000)
            yield self._event("TelemetryReported", f"telemetry-{run.run_id}", telemetry, run)
        yield from self._advance_seeds(run)
        yield from self._decide(run, packet.packet_id, epoch_event.event_id)

    def _transition(
        self, run: _Run, slot_number: int, to_stage: int, command_id: str, cause: str
    ) -> pb.EventEnvelope:
        slot = run.slots[slot_number]
        transition = pb.SeedTransitioned(
            slot=slot_number,
            seed_id=slot.seed_id,
            from_stage=slot.stage,  # type: ignore[arg-type]
            to_stage=to_stage,  # type: ignore[arg-type]
            command_id=command_id,
            epoch=run.epoch,
            blueprint_id=slot.blueprint_id,
        )
        gate = GATE_INTO.get(to_stage)
        if gate:
            result = transition.gates.add(gate=gate, passed=True, reason="ok")
            result.measured["loss_delta"] = -0.01
        slot.stage = to_stage
        return self._event(
            "SeedTransitioned", f"seed-{run.run_id}.{slot_number}", transition, run, slot.command_id, cause
        )

    def _advance_seeds(self, run: _Run) -> Iterator[pb.EventEnvelope]:
        for number, slot in enumerate(run.slots):
            if slot.stage in (pb.SEED_STAGE_DORMANT, pb.SEED_STAGE_FOSSILIZED):
                continue
            if slot.stage in CULL_PATH:
                following = CULL_PATH[CULL_PATH.index(slot.stage) + 1]
            else:
                following = STAGE_PATH[STAGE_PATH.index(slot.stage) + 1]
            yield self._transition(run, number, following, "", "")
            if following == pb.SEED_STAGE_FOSSILIZED or following == pb.SEED_STAGE_CULLED:
                yield self._field_report(run, number)
            if following == pb.SEED_STAGE_BLENDING and self.random.random() < 0.05:
                violation = pb.IsolationViolationDetected(
                    slot=number, seed_id=slot.seed_id, violation_count=1, epoch=run.epoch
                )
                yield self._event("IsolationViolationDetected", f"seed-{run.run_id}.{number}", violation, run)

    def _field_report(self, run: _Run, slot_number: int) -> pb.EventEnvelope:
        slot = run.slots[slot_number]
        report = pb.FieldReport(
            report_id=self._id("fr"),
            command_id=slot.command_id,
            run_id=run.run_id,
            seed_id=slot.seed_id,
            slot=slot_number,
            blueprint_id=slot.blueprint_id,
            outcome=pb.FIELD_REPORT_OUTCOME_SUCCESS
            if slot.stage == pb.SEED_STAGE_FOSSILIZED
            else pb.FIELD_REPORT_OUTCOME_REGRESSION,
            delta_accuracy=0.01,
            policy_version=self.policy_version,
            risk_at_decision=pb.RISK_LEVEL_GREEN,
            start_epoch=slot.germinated_epoch,
            end_epoch=run.epoch,
        )
        return self._event(
            "FieldReportIssued",
            f"report-{run.run_id}",
            pb.FieldReportIssued(report=report),
            run,
            slot.command_id,
        )

    def _decide(self, run: _Run, packet_id: int, cause: str) -> Iterator[pb.EventEnvelope]:
        decision_stream = f"decision-{run.run_id}"
        dormant = [number for number, slot in enumerate(run.slots) if slot.stage == pb.SEED_STAGE_DORMANT]
        active = [number for number, slot in enumerate(run.slots) if slot.stage in STAGE_PATH[1:6]]
        act = self.random.random()
        if dormant and act < 0.15:
            slot_number, operation = self.random.choice(dormant), pb.SEED_OP_GERMINATE
        elif active and act > 0.97:
            slot_number, operation = self.random.choice(active), pb.SEED_OP_CULL
        else:
            decision = pb.DecisionMade(
                policy_name="heuristic",
                policy_version=self.policy_version,
                risk_level=pb.RISK_LEVEL_GREEN,
                latency_ms=0.8,
                action="wait",
                packet_id=packet_id,
            )
            yield self._event("DecisionMade", decision_stream, decision, run, causation_id=cause)
            return
        command_id = self._id("cmd")
        blueprint_id = f"BP{self.random.randint(1, 35):03d}"
        decision = pb.DecisionMade(
            policy_name="heuristic",
            policy_version=self.policy_version,
            risk_level=pb.RISK_LEVEL_YELLOW,
            latency_ms=1.3,
            command_id=command_id,
            action="germinate" if operation == pb.SEED_OP_GERMINATE else "cull",
            packet_id=packet_id,
        )
        decision_event = self._event("DecisionMade", decision_stream, decision, run, command_id, cause)
        yield decision_event
        command = pb.AdaptationCommand(
            command_id=command_id,
            command_type=pb.COMMAND_TYPE_SEED,
            target_slot=slot_number,
            seed_operation=pb.SeedOperationCommand(operation=operation, blueprint_id=blueprint_id),
            issued_by="tamiyo",
            policy_version=self.policy_version,
        )
        issued = pb.AdaptationCommandIssued(command=command, decision_event_id=decision_event.event_id)
        command_event = self._event(
            "AdaptationCommandIssued",
            f"command-{command_id}",
            issued,
            run,
            command_id,
            decision_event.event_id,
        )
        yield command_event
        slot = run.slots[slot_number]
        slot.command_id = command_id
        if operation == pb.SEED_OP_GERMINATE:
            run.seeds += 1
            slot.seed_id, slot.blueprint_id, slot.germinated_epoch = run.seeds, blueprint_id, run.epoch
            yield self._transition(
                run, slot_number, pb.SEED_STAGE_GERMINATED, command_id, command_event.event_id
            )
            graft = pb.SeedGrafted(
                slot=slot_number,
                seed_id=slot.seed_id,
                blueprint_id=blueprint_id,
                artifact_hash=f"{self.random.getrandbits(256):064x}",
                parameters=1200,
                command_id=command_id,
            )
            yield self._event(
                "SeedGrafted",
                f"seed-{run.run_id}.{slot_number}",
                graft,
                run,
                command_id,
                command_event.event_id,
            )
        else:
            yield self._transition(run, slot_number, pb.SEED_STAGE_CULLED, command_id, command_event.event_id)
            yield self._field_report(run, slot_number)

    def _checkpoint(self, run: _Run) -> pb.EventEnvelope:
        manifest = pb.CheckpointManifest(
            run_id=run.run_id,
            epoch=run.epoch,
            content_hash=f"{self.random.getrandbits(256):064x}",
            components=["model", "optimizer", "rng", "seeds"],
            log_position=self.position,
        )
        event = self._event(
            "CheckpointCommitted", f"run-{run.run_id}", pb.CheckpointCommitted(manifest=manifest), run
        )
        run.last_checkpoint = (run.epoch, event.global_position)
        run.checkpoint_slots = [replace(slot) for slot in run.slots]
        return event

    def _rollback(self, run: _Run) -> Iterator[pb.EventEnvelope]:
        if run.last_checkpoint is None:
            return
        epoch, position = run.last_checkpoint
        stream = f"run-{run.run_id}"
        request = pb.RollbackRequested(
            run_id=run.run_id, target_epoch=epoch, mode=pb.ROLLBACK_MODE_FAST, reason="loss spike"
        )
        yield self._event("RollbackRequested", stream, request, run)
        completed = pb.RollbackCompleted(
            run_id=run.run_id,
            target_epoch=epoch,
            target_position=position,
            mode=pb.ROLLBACK_MODE_FAST,
            superseded_from=position + 1,
            superseded_to=self.position,
        )
        run.epoch = epoch
        run.slots = [replace(slot) for slot in run.checkpoint_slots]
        yield self._event("RollbackCompleted", stream, completed, run)


def realistic_log(events: int, seed: int = 0, first_position: int = 1) -> Iterator[pb.EventEnvelope]:
    """About `events` events: the catalogue, then 200-epoch runs with policy updates and alerts between."""
    simulator = Simulator(seed, first_position)
    produced = 0
    for envelope in simulator.catalogue():
        produced += 1
        yield envelope
    while produced < events:
        for envelope in simulator.run(200):
            produced += 1
            yield envelope
            if produced >= events:
                return
        for envelope in (*simulator.policy_update(), *simulator.alert()):
            produced += 1
            yield envelope
