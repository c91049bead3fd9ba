"""The end-of-epoch hook (SPEC §8): assembly, controller, command, guard — timed against its budget.

    events, pending = end_of_epoch(trainer, measured, seed_events)

1. assembly: the SystemStatePacket (metrics, hardware, seed states) and EpochCompleted;
2. controller: `decide(packet, context)`, its events and at most one signed command;
3. command: Kasmina's intake verifies the envelope once; a verified ROLLBACK becomes a rollback request
   (through the aggregate's decide_rollback), Kasmina applies any other; a rejection is CommandRejected;
4. guard: a loss explosion asks for a fast rollback, else an operator's request is taken (verified; a
   refused one is a CommandRejected among the epoch's events).

The four phases are timed: EpochHookTimed, or EpochHookOverrun when the total exceeds the run's
`hook_budget_ms`, and the controller's conservative mode when its CPU time does. With
`controller_timing = "none"` the controller is told nothing of it (0 ms, no overrun; leyline.controller).
The pending rollback, if any, is returned for the trainer to apply after the hook.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from domains.tolaria import metrics, rollback
from domains.tolaria.aggregate import IdenticalReplay, RollbackRejected, event_id
from domains.tolaria.headroom import with_headroom
from domains.tolaria.hosts import count_parameters
from domains.tolaria.loop import EpochMeasurements
from leyline import new_envelope, pb
from leyline.controller import TIMING_MEASURED, ControllerContext

if TYPE_CHECKING:
    from domains.tolaria.trainer import Trainer

SOURCE = "tolaria"


@dataclass
class HookTiming:
    assembly_ms: float = 0.0
    controller_ms: float = 0.0
    command_ms: float = 0.0
    guard_ms: float = 0.0
    cpu_ms: float = 0.0  # the training thread's CPU time over the whole hook

    @property
    def total_ms(self) -> float:
        return self.assembly_ms + self.controller_ms + self.command_ms + self.guard_ms


def packet_id(seed: int, run_id: str, generation: int, epoch: int) -> int:
    digest = hashlib.sha256(f"packet/{seed}/{run_id}/{generation}/{epoch}".encode())
    return int.from_bytes(digest.digest()[:8], "little")


def timed(trainer: Trainer) -> bool:
    """Whether the controller is told the hook's cost (RunConfig.controller_timing)."""
    return trainer.config.controller_timing == TIMING_MEASURED


def hardware(device: torch.device) -> pb.HardwareContext:
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return pb.HardwareContext(
            device=str(device),
            memory_used_gb=(total - free) / 2**30,
            memory_total_gb=total / 2**30,
            device_count=torch.cuda.device_count(),
        )
    return pb.HardwareContext(device="cpu", device_count=1)


def assemble_packet(trainer: Trainer, m: EpochMeasurements) -> pb.SystemStatePacket:
    packet = pb.SystemStatePacket(
        epoch=m.epoch,
        global_step=trainer.global_step,
        training_loss=m.training_loss,
        training_accuracy=m.training_accuracy,
        validation_loss=m.validation_loss,
        validation_accuracy=m.validation_accuracy,
        run_id=trainer.run_id,
        packet_id=packet_id(trainer.config.seed, trainer.run_id, trainer.generation, m.epoch),
        hardware=hardware(trainer.device),
    )
    packet.metrics["lr"] = trainer.optimizer.param_groups[0]["lr"]
    packet.metrics["grad_norm"] = m.grad_norm
    packet.metrics["epoch_ms"] = m.wall_ms
    packet.metrics["hook_ms"] = trainer.last_hook_ms
    packet.seeds.extend(trainer.kasmina.seed_states())
    return packet


def end_of_epoch(
    trainer: Trainer, m: EpochMeasurements, seed_events: list[pb.EventEnvelope]
) -> tuple[list[pb.EventEnvelope], rollback.Pending | None]:
    headroom = trainer.headroom.drain()
    timing = HookTiming()
    clock, cpu_clock = time.perf_counter(), time.thread_time()

    packet = assemble_packet(trainer, m)
    parameters = count_parameters(trainer.model)
    completed = pb.EpochCompleted(
        state=packet, epoch_wall_ms=m.wall_ms, test_accuracy=m.test_accuracy, parameters=parameters
    )
    # The epoch's events go to the writer thread in one hand-over after the hook, so that the writer
    # does not compete with the hook for the interpreter while it is being timed.
    events = [*seed_events, trainer.envelope("EpochCompleted", completed, m.epoch)]
    now = time.perf_counter()
    timing.assembly_ms, clock = (now - clock) * 1000, now

    context = ControllerContext(
        run_id=trainer.run_id,
        epoch=m.epoch,
        seeds=with_headroom(packet.seeds, headroom),
        catalogue=(),
        parameters=parameters,
        last_hook_ms=trainer.last_hook_cpu_ms if timed(trainer) else 0.0,
        applied_commands=tuple(trainer.applied_commands),
        hook_budget_ms=trainer.config.hook_budget_ms,
        lifecycle=trainer.kasmina.config.lifecycle,
        run_epochs=trainer.kasmina.config.run_epochs,
    )
    output = trainer.controller.decide(packet, context)
    now = time.perf_counter()
    timing.controller_ms, clock = (now - clock) * 1000, now

    events.extend(output.events)
    trainer.applied_commands = []
    ordered: rollback.Pending | None = None
    if output.command is not None:
        events.append(output.command)
        ordered, effects = command(trainer, output.command, m.epoch)
        events.extend(effects)
        if ordered is not None or (effects and effects[0].event_type != "CommandRejected"):
            trainer.applied_commands.append(output.command.event_id)
    now = time.perf_counter()
    timing.command_ms, clock = (now - clock) * 1000, now

    pending = rollback.guard(trainer, m) or ordered
    if pending is None:
        pending, refused = rollback.operator_request(trainer, m.epoch)
        events.extend(refused)
    timing.guard_ms = (time.perf_counter() - clock) * 1000
    timing.cpu_ms = (time.thread_time() - cpu_clock) * 1000

    events.extend(record_timing(trainer, m.epoch, timing))
    return events, pending


def command(
    trainer: Trainer, envelope: pb.EventEnvelope, epoch: int
) -> tuple[rollback.Pending | None, list[pb.EventEnvelope]]:
    """A controller's signed command, verified once by Kasmina's intake: a verified ROLLBACK is granted
    (or rejected) here, through the aggregate's decide_rollback; Kasmina applies everything else."""
    received = trainer.kasmina.receive(envelope)
    verified = received.command
    if verified.command_type != pb.COMMAND_TYPE_ROLLBACK:
        return None, trainer.kasmina.apply(received, epoch)
    if received.refusal is not None:  # on the command's own stream: a rollback names no seed slot
        code, reason = received.refusal
        return None, [command_rejected(trainer, envelope, verified, code, reason, epoch)]
    try:
        return rollback.controller_request(trainer, verified, epoch), []
    except RollbackRejected as exc:
        code = "identical_replay" if isinstance(exc, IdenticalReplay) else "no_checkpoint"
        return None, [command_rejected(trainer, envelope, verified, code, str(exc), epoch)]


def command_rejected(
    trainer: Trainer,
    envelope: pb.EventEnvelope,
    command: pb.AdaptationCommand,
    code: str,
    reason: str,
    epoch: int,
) -> pb.EventEnvelope:
    rejected = pb.CommandRejected(command_id=command.command_id, reason=reason, code=code)
    return new_envelope(
        "CommandRejected",
        envelope.stream,
        rejected,
        run_id=trainer.run_id,
        epoch=epoch,
        correlation_id=command.command_id,
        causation_id=envelope.event_id,
        source=SOURCE,
        event_id=event_id(trainer.run_id, trainer.generation, epoch, "CommandRejected"),
    )


def record_timing(trainer: Trainer, epoch: int, timing: HookTiming) -> list[pb.EventEnvelope]:
    total = timing.total_ms
    budget = trainer.config.hook_budget_ms
    overrun = total > budget
    hook = pb.EpochHookTimed(
        epoch=epoch,
        assembly_ms=timing.assembly_ms,
        controller_ms=timing.controller_ms,
        command_ms=timing.command_ms,
        guard_ms=timing.guard_ms,
        total_ms=total,
        overrun=overrun,
        budget_ms=budget,
    )
    events = [trainer.envelope("EpochHookOverrun" if overrun else "EpochHookTimed", hook, epoch)]
    if overrun:
        metrics.HOOK_OVERRUNS.inc()
    # The operator's figures (the event, the metrics, Nissa's alerts) are wall time. The controller reacts
    # to what the hook itself cost on the training thread: on a machine oversubscribed by other processes
    # wall time measures the machine, and decisions that follow it would differ from run to run with the load.
    if timing.cpu_ms > budget and timed(trainer):
        reason = (
            f"end-of-epoch hook used {timing.cpu_ms:.1f} ms of CPU ({total:.1f} ms wall), "
            f"budget {budget:.1f} ms"
        )
        events.extend(trainer.controller.enter_conservative_mode(reason, epoch))
    metrics.HOOK_SECONDS.observe(total / 1000)
    trainer.last_hook_ms, trainer.last_hook_cpu_ms = total, timing.cpu_ms
    return events
