"""Approving experimental blueprints for live grafts: one BlueprintApproved on `blueprint-<BPnnn>`.

`decide(approved, blueprint_id, ...)` is pure: the approval event, or an `ApprovalRefused` naming why (an
unknown id, an adversarial quarantine-only blueprint, a blueprint that needs no approval or already has
one). `evolve` folds approvals into the set of approved ids; `approved_in(store)` reads that set from the
log, up to a position when a run must see the catalogue as it stood when it started (a resumed run then
chooses exactly as before). `with_approvals` is the catalogue Tamiyo chooses from: each approved
blueprint's descriptor has `approved` set.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Sequence
from enum import Enum

from domains.karn import catalog
from domains.karn.blueprint import KarnError, UnknownBlueprint
from eventstore import EventFilter, EventStore
from leyline import decode_payload, new_envelope, pb, stream_name

SOURCE = "karn"
EVENT_TYPE = "BlueprintApproved"


class Refusal(Enum):
    UNKNOWN = "unknown"
    QUARANTINED = "quarantined"
    NOT_NEEDED = "not_needed"
    ALREADY = "already_approved"


class ApprovalRefused(KarnError):
    def __init__(self, refusal: Refusal, message: str) -> None:
        super().__init__(message)
        self.refusal = refusal


def evolve(approved: frozenset[str], payload: pb.BlueprintApproved) -> frozenset[str]:
    return approved | {payload.blueprint_id}


def decide(
    approved: Collection[str], blueprint_id: str, approved_by: str, reason: str = ""
) -> pb.BlueprintApproved:
    try:
        blueprint = catalog.get(blueprint_id)
    except UnknownBlueprint as exc:
        raise ApprovalRefused(Refusal.UNKNOWN, str(exc)) from None
    name = f"{blueprint_id} {blueprint.name}"
    if blueprint.quarantine_only:
        raise ApprovalRefused(
            Refusal.QUARANTINED, f"{name} is adversarial (quarantine-only): it can never be approved"
        )
    if not blueprint.requires_approval:
        raise ApprovalRefused(Refusal.NOT_NEEDED, f"{name} is in the safe tier: it needs no approval")
    if blueprint_id in approved:
        raise ApprovalRefused(Refusal.ALREADY, f"{name} is already approved")
    return pb.BlueprintApproved(blueprint_id=blueprint_id, approved_by=approved_by, reason=reason)


def approved_in(store: EventStore, to_position: int | None = None) -> frozenset[str]:
    """The blueprints approved in the log (up to `to_position`, inclusive, when given)."""
    approved: frozenset[str] = frozenset()
    wanted = EventFilter(categories=frozenset({"blueprint"}), event_types=frozenset({EVENT_TYPE}))
    for envelope in store.read_all(event_filter=wanted, to_position=to_position):
        payload = decode_payload(envelope)
        assert isinstance(payload, pb.BlueprintApproved)
        approved = evolve(approved, payload)
    return approved


def approve(store: EventStore, blueprint_id: str, approved_by: str, reason: str = "") -> int:
    """Append the approval; returns its log position. The event id is derived from the blueprint id, so
    two processes approving at once append it once."""
    approval = decide(approved_in(store), blueprint_id, approved_by, reason)
    event_id = uuid.uuid5(uuid.NAMESPACE_OID, f"{EVENT_TYPE}:{blueprint_id}").hex
    envelope = new_envelope(
        EVENT_TYPE, stream_name("blueprint", blueprint_id), approval, source=SOURCE, event_id=event_id
    )
    return store.append([envelope])[0]


def with_approvals(
    descriptors: Iterable[pb.BlueprintDescriptor], approved: Collection[str]
) -> Sequence[pb.BlueprintDescriptor]:
    """Copies of the descriptors, each approved blueprint's with `approved` set."""
    result = []
    for descriptor in descriptors:
        copy = pb.BlueprintDescriptor()
        copy.CopyFrom(descriptor)
        if descriptor.blueprint_id in approved and not descriptor.quarantine_only:
            copy.approved = True
        result.append(copy)
    return result
