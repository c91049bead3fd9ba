"""Kasmina's intake: a command envelope is decoded, verified once and translated into a lifecycle command.

    received = kasmina.receive(envelope)   # decode + verify (signature, nonce, clock, run): once
    if received.verified and received.command.command_type == pb.COMMAND_TYPE_ROLLBACK:
        ...  # the trainer acts on received.command itself, without verifying again
    events = kasmina.apply(received, epoch)  # translate + decide + effects (execute = apply ∘ receive)

A command id this run already processed is `duplicate` and is not verified again (its nonce was spent
the first time). Refusals before verification (malformed envelope, a slot this host lacks) belong to no
slot and never mark the command id as processed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from domains.kasmina import lifecycle as lc
from domains.kasmina.commands import Advance, Command, Cull, Germinate, Reject, Terminate
from domains.kasmina.gates import Measurements
from domains.kasmina.state import KasminaState
from leyline import DecodeError, decode_payload, pb
from leyline.errors import SignatureError
from leyline.signing import SIGNATURE_CODES, Verifier

# Refusals that name no slot of this host: their CommandRejected goes on the command's own stream.
ORPHAN_CODES = frozenset({"malformed", "unknown_slot"})


@dataclass(frozen=True)
class Received:
    """A command envelope after the intake: decoded and, unless refused or a duplicate, verified."""

    envelope: pb.EventEnvelope
    command: pb.AdaptationCommand  # empty when the envelope could not be decoded
    command_id: str
    refusal: tuple[str, str] | None = None  # (code, reason) of the CommandRejected it earns
    duplicate: bool = False  # a command id this run already processed: nothing to do

    @property
    def verified(self) -> bool:
        return self.refusal is None and not self.duplicate

    @property
    def slot(self) -> int:
        return self.command.target_slot


def receive(envelope: pb.EventEnvelope, state: KasminaState, verifier: Verifier, run_id: str) -> Received:
    """Decode and verify a command envelope once (see the module docstring)."""
    empty = pb.AdaptationCommand()
    if envelope.event_type != "AdaptationCommandIssued":
        reason = f"not a command: {envelope.event_type}"
        return Received(envelope, empty, envelope.event_id, ("malformed", reason))
    try:
        issued = decode_payload(envelope)
    except DecodeError as exc:
        return Received(envelope, empty, envelope.event_id, ("malformed", str(exc)))
    assert isinstance(issued, pb.AdaptationCommandIssued)
    command = issued.command
    command_id = command.command_id or envelope.event_id
    if command.command_type != pb.COMMAND_TYPE_ROLLBACK:
        slot = command.target_slot
        if not state.has_slot(slot):
            return Received(envelope, command, command_id, ("unknown_slot", f"this host has no slot {slot}"))
        if command_id in state.slot(slot).processed:
            return Received(envelope, command, command_id, duplicate=True)
    try:
        verifier.verify(envelope)
    except SignatureError as exc:
        code = SIGNATURE_CODES.get(type(exc), "bad_signature")
        return Received(envelope, command, command_id, (code, str(exc)))
    if envelope.run_id != run_id:
        reason = f"command for run {envelope.run_id!r}, this is run {run_id!r}"
        return Received(envelope, command, command_id, ("wrong_run", reason))
    return Received(envelope, command, command_id)


Germinator = Callable[[str, int, int, pb.SeedOperationCommand], Germinate]


def translate(
    received: Received,
    state: KasminaState,
    last: Mapping[int, Measurements],
    epoch: int,
    now_ms: int,
    germinate: Germinator,
    too_late: Callable[[int, int], str | None] = lambda epoch, ramp: None,
) -> Command:
    """The lifecycle command a received (not duplicate, slot-bound) command becomes. `germinate` fetches
    the module and runs G0: it is called only once the pure pre-check has passed. `too_late(epoch,
    ramp)` says why a germination cannot reach its verdict before the run ends (unfinished.py), or None."""
    command, command_id, slot = received.command, received.command_id, received.slot
    if received.refusal is not None:
        return Reject(command_id, slot, *received.refusal)
    if command.command_type != pb.COMMAND_TYPE_SEED or not command.HasField("seed_operation"):
        return Reject(command_id, slot, "unsupported_command", "Kasmina executes seed operations only")
    if command.execution_deadline_ms and now_ms > command.execution_deadline_ms:
        reason = f"execution deadline {command.execution_deadline_ms} ms has passed"
        return Reject(command_id, slot, "deadline_expired", reason)
    operation = command.seed_operation
    refusal = lc.precheck(state, slot, operation.operation, measured=slot in last)
    if refusal is not None:
        return Reject(command_id, slot, *refusal)
    if operation.operation == pb.SEED_OP_GERMINATE:
        late = too_late(epoch, operation.alpha_ramp_epochs)
        if late is not None:
            return Reject(command_id, slot, "run_ending", late)
        return germinate(command_id, slot, epoch, operation)
    if operation.operation == pb.SEED_OP_ADVANCE:
        return Advance(command_id, slot, epoch, last.get(slot, Measurements()))
    if operation.operation == pb.SEED_OP_CULL:
        return Cull(command_id, slot, epoch, command.annotations.get("reason", "cull command"))
    if operation.operation == pb.SEED_OP_TERMINATE:
        return Terminate(command_id, slot, epoch, command.annotations.get("reason", "terminated"))
    return Reject(command_id, slot, "unsupported_command", "unknown seed operation")
