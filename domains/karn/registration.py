"""Registering the catalogue in the log: one BlueprintRegistered per blueprint on `blueprint-<BPnnn>`.

`decide(registered, descriptors)` is pure: it returns the registrations the log lacks (new blueprints, or
metadata that changed since the last registration). Event ids are derived from the descriptor's bytes,
so two processes registering at once append each registration once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from domains.karn import catalog, metrics
from eventstore import EventFilter, EventStore
from leyline import decode_payload, new_envelope, pb, stream_name

SOURCE = "karn"
Registered = dict[str, bytes]  # blueprint id → serialized descriptor of its latest registration


def evolve(registered: Registered, payload: pb.BlueprintRegistered) -> Registered:
    descriptor = payload.descriptor
    return {**registered, descriptor.blueprint_id: descriptor.SerializeToString(deterministic=True)}


def decide(
    registered: Registered, descriptors: Sequence[pb.BlueprintDescriptor]
) -> list[pb.BlueprintRegistered]:
    return [
        pb.BlueprintRegistered(descriptor=descriptor)
        for descriptor in descriptors
        if registered.get(descriptor.blueprint_id) != descriptor.SerializeToString(deterministic=True)
    ]


def registered_in(store: EventStore) -> Registered:
    registered: Registered = {}
    wanted = EventFilter(categories=frozenset({"blueprint"}), event_types=frozenset({"BlueprintRegistered"}))
    for envelope in store.read_all(event_filter=wanted):
        payload = decode_payload(envelope)
        assert isinstance(payload, pb.BlueprintRegistered)
        registered = evolve(registered, payload)
    return registered


def register_catalogue(store: EventStore) -> int:
    """Append the registrations the log lacks; returns how many were appended."""
    pending = decide(registered_in(store), catalog.descriptors())
    envelopes = []
    for registration in pending:
        data = registration.descriptor.SerializeToString(deterministic=True)
        event_id = uuid.uuid5(uuid.NAMESPACE_OID, data.hex()).hex
        stream = stream_name("blueprint", registration.descriptor.blueprint_id)
        envelopes.append(
            new_envelope("BlueprintRegistered", stream, registration, source=SOURCE, event_id=event_id)
        )
    if envelopes:
        store.append(envelopes)
        metrics.REGISTERED.inc(len(envelopes))
    return len(envelopes)
