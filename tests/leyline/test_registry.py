from __future__ import annotations

import pytest

from leyline import new_envelope, pb
from leyline.envelope import decode_payload
from leyline.errors import RegistryError, UnknownEventType
from leyline.registry import DEFAULT_REGISTRY, EVENT_TYPES, Registry


def test_default_registry_covers_the_spec_event_types() -> None:
    names = {name for name, _ in EVENT_TYPES}
    for required in (
        "RunStarted",
        "EpochCompleted",
        "CheckpointCommitted",
        "RollbackRequested",
        "RollbackCompleted",
        "RunCompleted",
        "RunFailed",
        "SeedTransitioned",
        "SeedGrafted",
        "IsolationViolationDetected",
        "CommandRejected",
        "BlueprintRegistered",
        "CompileJobQueued",
        "CompileJobStarted",
        "CompileJobFailed",
        "CompileJobSucceeded",
        "ArtifactStored",
        "DecisionMade",
        "AdaptationCommandIssued",
        "ConservativeModeChanged",
        "FieldReportIssued",
        "PolicyTrained",
        "PolicyValidated",
        "PolicyRejected",
        "PolicyPublished",
        "PolicyActivated",
        "PolicyRolledBack",
        "AlertFired",
        "AlertResolved",
    ):
        assert required in names
    DEFAULT_REGISTRY.validate()


def test_duplicate_type_is_rejected() -> None:
    registry = Registry()
    registry.register("RunStarted", pb.RunStarted)
    with pytest.raises(RegistryError, match="registered twice"):
        registry.register("RunStarted", pb.RunStarted)


def test_gap_in_upcaster_chain_is_reported() -> None:
    registry = Registry()
    registry.register("RunStarted", pb.RunStarted, schema_version=3)
    registry.add_upcaster("RunStarted", 1, lambda data: data)
    with pytest.raises(RegistryError, match=r"no upcaster from version\(s\) \[2\]"):
        registry.validate()


def test_duplicate_upcaster_is_reported() -> None:
    registry = Registry()
    registry.register("RunStarted", pb.RunStarted, schema_version=2)
    registry.add_upcaster("RunStarted", 1, lambda data: data)
    registry.add_upcaster("RunStarted", 1, lambda data: data)
    with pytest.raises(RegistryError, match="duplicate upcasters"):
        registry.validate()


def test_upcaster_beyond_current_version_is_reported() -> None:
    registry = Registry()
    registry.register("RunStarted", pb.RunStarted, schema_version=1)
    registry.add_upcaster("RunStarted", 1, lambda data: data)
    with pytest.raises(RegistryError, match="at or beyond it"):
        registry.validate()


def test_unknown_type() -> None:
    with pytest.raises(UnknownEventType, match="Nope"):
        Registry().get("Nope")


def test_old_events_are_upcast_on_read() -> None:
    # Version 1 of RunStarted stored the dataset name in the host_model field; version 2 moved it.
    def move_dataset(data: bytes) -> bytes:
        old = pb.RunStarted.FromString(data)
        return pb.RunStarted(run_id=old.run_id, dataset=old.host_model).SerializeToString()

    registry = Registry()
    registry.register("RunStarted", pb.RunStarted, schema_version=2)
    registry.add_upcaster("RunStarted", 1, move_dataset)
    registry.validate()
    envelope = new_envelope("RunStarted", "run-r1", pb.RunStarted(run_id="r1", host_model="digits"))
    envelope.schema_version = 1
    payload = decode_payload(envelope, registry)
    assert isinstance(payload, pb.RunStarted)
    assert payload.dataset == "digits"
    assert payload.host_model == ""


def test_newer_schema_than_code_is_refused_clearly() -> None:
    envelope = new_envelope("RunStarted", "run-r1", pb.RunStarted(run_id="r1"))
    envelope.schema_version = 9
    with pytest.raises(Exception, match="newer than this code"):
        decode_payload(envelope)
