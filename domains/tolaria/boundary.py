"""The epochs of a data-parallel run: each rank trains its share, rank 0 decides, every rank applies.

    loss, correct, grad_norm, steps, trained = train_share(trainer, order, epoch)  # sums all-reduced
    events, pending, rolls_back = decide_and_share(trainer, measured, seed_events)  # rank 0's decision
    result = roll_back(trainer, pending)                                            # when rolls_back
    agree(trainer)                                                                  # or RankDesync

Rank 0 runs the end-of-epoch hook (hook.py: controller, command, guard, operator requests) on the
telemetry every rank holds alike (the epoch's sums are all-reduced before, validation is the same pass on
the same weights) and broadcasts a `Decision`: the signed command it applied, if any (not a rollback:
a rollback is shared as one), and whether it rolls back. The other ranks apply the same command through
Kasmina's intake (its signature checked by their own verifier), so the same seed is grafted with the same
blueprint, slot, initialisation and alpha schedule; a rollback restores on every rank the checkpoint rank
0 returned to. Then every rank checks that they agree. Rank 0's decision and another rank's applying it
are each its own work at the boundary (`collective.working`): past the boundary deadline the rank is hung
and the run fails with RankHung (domains/tolaria/heartbeat.py). A run of one process takes none of these
steps: it trains the whole order, nothing is wrapped or reduced, `decide_and_share` is the hook itself.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from domains.tolaria import checkpoint as ckpt
from domains.tolaria import hook, rollback
from domains.tolaria.collective import agreement_digest
from domains.tolaria.loop import EpochMeasurements, train_epoch
from domains.tolaria.rollback import RollbackResult, RunError
from leyline import decode_envelope, decode_payload, pb

if TYPE_CHECKING:
    from domains.tolaria.trainer import Trainer

COMMAND_EVENT = "AdaptationCommandIssued"


@dataclass(frozen=True)
class Decision:
    """What rank 0 decided at a boundary, as every rank applies it."""

    command: bytes = b""  # the signed AdaptationCommandIssued envelope (not a rollback), or none
    rolls_back: bool = False
    now_ms: int = 0  # the time rank 0's intake judged the command's deadline by

    HEADER = struct.Struct("<?q")

    def encode(self) -> bytes:
        return self.HEADER.pack(self.rolls_back, self.now_ms) + self.command

    @classmethod
    def decode(cls, data: bytes) -> Decision:
        rolls_back, now_ms = cls.HEADER.unpack_from(data)
        return cls(data[cls.HEADER.size :], rolls_back, now_ms)


class BoundaryClock:
    """Kasmina's clock in a data-parallel run: rank 0 reads the wall clock and keeps the reading its
    intake judged a command by; the other ranks read rank 0's reading, so a deadline rank 0 met (after
    a seed's first compile, say) is met on every rank."""

    def __init__(self, leads: bool) -> None:
        self.leads = leads
        self.reading = 0

    def __call__(self) -> int:
        if self.leads:
            self.reading = time.time_ns() // 1_000_000
        return self.reading


@dataclass(frozen=True)
class RolledBack:
    """The checkpoint rank 0 returned to, and the run's generation after it."""

    epoch: int
    generation: int

    FORMAT = struct.Struct("<qq")

    def encode(self) -> bytes:
        return self.FORMAT.pack(self.epoch, self.generation)

    @classmethod
    def decode(cls, data: bytes) -> RolledBack:
        return cls(*cls.FORMAT.unpack(data))


def shared_command(events: list[pb.EventEnvelope]) -> bytes:
    """The command of the boundary's events that the other ranks apply too (a rollback is shared as one)."""
    for envelope in events:
        if envelope.event_type == COMMAND_EVENT:
            issued = decode_payload(envelope)
            if (
                isinstance(issued, pb.AdaptationCommandIssued)
                and issued.command.command_type != pb.COMMAND_TYPE_ROLLBACK
            ):
                return bytes(envelope.SerializeToString())
    return b""


def train_share(
    trainer: Trainer, order: torch.Tensor, epoch: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, int]:
    """This rank's share of the epoch (under DDP when there are several), its sums added over the ranks:
    loss and correct sums, the last step's gradient norm, the steps and the examples trained on all ranks
    (the epoch's order padded to a multiple of the ranks). One process trains the whole order."""
    collective = trainer.collective
    share = collective.shard(order)
    with collective.failing_as(epoch):
        loss, correct, grad_norm, steps = train_epoch(
            collective.wrap(trainer.model),
            trainer.optimizer,
            trainer.loss_fn,
            trainer.splits.train,
            share,
            collective.local_batch(trainer.config.batch_size),
        )
    loss, correct = collective.sum([loss, correct], epoch)
    return loss, correct, grad_norm, steps, len(share) * collective.world_size


def decide_and_share(
    trainer: Trainer, m: EpochMeasurements, seed_events: list[pb.EventEnvelope]
) -> tuple[list[pb.EventEnvelope], rollback.Pending | None, bool]:
    """The boundary's events, rank 0's pending rollback, and whether the run rolls back (on every rank)."""
    collective = trainer.collective
    if collective.world_size == 1:
        events, pending = hook.end_of_epoch(trainer, m, seed_events)
        return events, pending, pending is not None
    if collective.leads:
        with collective.working(m.epoch, trainer.fail):  # past the boundary deadline: RankHung
            events, pending = hook.end_of_epoch(trainer, m, seed_events)
            decision = Decision(shared_command(events), pending is not None, trainer.boundary_clock.reading)
        collective.broadcast(decision.encode(), m.epoch)
        return events, pending, pending is not None
    decision = Decision.decode(collective.broadcast(b"", m.epoch))
    events = list(seed_events)
    if decision.command:
        with collective.working(m.epoch, trainer.fail):
            trainer.boundary_clock.reading = decision.now_ms
            _, effects = hook.command(trainer, decode_envelope(decision.command), m.epoch)
        events.extend(effects)
    return events, None, decision.rolls_back


def roll_back(trainer: Trainer, pending: rollback.Pending | None) -> RollbackResult:
    """Rank 0 records and applies its rollback, then every other rank restores the same checkpoint."""
    collective = trainer.collective
    if pending is not None:
        result = rollback.record_and_apply(trainer, pending)
        collective.broadcast(RolledBack(result.target_epoch, trainer.generation).encode(), trainer.epoch)
        return result
    started = time.perf_counter()
    target = RolledBack.decode(collective.broadcast(b"", trainer.epoch))
    cached = trainer.cache.get(target.epoch)
    if cached is not None:
        trainer.restore(cached.restorable())
        mode = pb.ROLLBACK_MODE_FAST
    else:
        record = trainer.log_state().checkpoint_at_or_before(target.epoch)
        if record is None or record.epoch != target.epoch:
            raise RunError(
                f"rank {collective.rank}: rank 0 rolled back to epoch {target.epoch}, not in the log"
            )
        trainer.restore(ckpt.deserialize(ckpt.read_file(trainer.data_dir, record.path, record.content_hash)))
        mode = pb.ROLLBACK_MODE_FULL
    trainer.cache.discard_after(target.epoch)
    trainer.generation = target.generation
    trainer.rollbacks += 1
    return RollbackResult(target.epoch, mode, (time.perf_counter() - started) * 1000)


def agree(trainer: Trainer) -> None:
    """Every rank holds the same slots, seeds, trainable parameters and step, or RankDesync names the first
    rank that does not (a run of one process checks nothing)."""
    if trainer.collective.world_size == 1:
        return
    kasmina = trainer.kasmina
    slots = [
        (
            str(state.slot),
            str(kasmina.slots[state.slot].kind),
            str(tuple(kasmina.slots[state.slot].shape)),
            str(state.stage),
            str(state.seed_id),
            state.blueprint_id,
            state.artifact_hash,
        )
        for state in kasmina.state.slots
    ]
    parameters = [(name, tuple(p.shape)) for name, p in trainer.model.named_parameters() if p.requires_grad]
    step = (trainer.epoch, trainer.global_step, trainer.generation)
    trainer.collective.agree(agreement_digest(slots, parameters, step), trainer.epoch)
