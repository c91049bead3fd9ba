"""Event-type registry: event_type → payload message class, schema version and upcaster chain.

An upcaster turns the payload bytes of schema version v into those of version v + 1. A type at schema
version N needs exactly one upcaster for each of 1 … N-1; `validate()` (run when a registry is built)
reports a gap or a duplicate with the type and the versions involved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from google.protobuf.message import Message

from leyline import leyline_pb2 as pb
from leyline.errors import RegistryError, UnknownEventType

Upcaster = Callable[[bytes], bytes]


@dataclass
class EventType:
    name: str
    message: type[Message]
    schema_version: int = 1
    upcasters: list[tuple[int, Upcaster]] = field(default_factory=list)


class Registry:
    def __init__(self) -> None:
        self._types: dict[str, EventType] = {}

    def register(self, name: str, message: type[Message], schema_version: int = 1) -> None:
        if name in self._types:
            raise RegistryError(f"event type {name!r} is registered twice")
        if schema_version < 1:
            raise RegistryError(f"event type {name!r}: schema version must be >= 1, got {schema_version}")
        self._types[name] = EventType(name, message, schema_version)

    def add_upcaster(self, name: str, from_version: int, upcaster: Upcaster) -> None:
        self.get(name).upcasters.append((from_version, upcaster))

    def get(self, name: str) -> EventType:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownEventType(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[EventType]:
        return iter(self._types.values())

    def validate(self) -> None:
        for event_type in self._types.values():
            versions = [v for v, _ in event_type.upcasters]
            duplicates = sorted({v for v in versions if versions.count(v) > 1})
            if duplicates:
                raise RegistryError(
                    f"event type {event_type.name!r}: duplicate upcasters from version(s) {duplicates}"
                )
            expected = set(range(1, event_type.schema_version))
            missing = sorted(expected - set(versions))
            if missing:
                raise RegistryError(
                    f"event type {event_type.name!r} is at schema version {event_type.schema_version} "
                    f"but has no upcaster from version(s) {missing}"
                )
            extra = sorted(set(versions) - expected)
            if extra:
                raise RegistryError(
                    f"event type {event_type.name!r} is at schema version {event_type.schema_version} "
                    f"but has upcasters from version(s) {extra}, at or beyond it"
                )

    def upcast(self, name: str, schema_version: int, payload: bytes) -> bytes:
        """Bring payload bytes written at schema_version up to the current schema version."""
        event_type = self.get(name)
        if schema_version > event_type.schema_version:
            raise RegistryError(
                f"event type {name!r}: stored schema version {schema_version} is newer than this code's "
                f"{event_type.schema_version}; upgrade Esper to read it"
            )
        chain = dict(event_type.upcasters)
        for version in range(max(schema_version, 1), event_type.schema_version):
            payload = chain[version](payload)
        return payload


# The event types of SPEC §4. Several types share one payload message where the content is the same.
EVENT_TYPES: tuple[tuple[str, type[Message]], ...] = (
    ("RunStarted", pb.RunStarted),
    ("EpochCompleted", pb.EpochCompleted),
    ("EpochHookTimed", pb.EpochHookTimed),
    ("EpochHookOverrun", pb.EpochHookTimed),
    ("CheckpointCommitted", pb.CheckpointCommitted),
    ("RollbackRequested", pb.RollbackRequested),
    ("RollbackCompleted", pb.RollbackCompleted),
    ("RunCompleted", pb.RunCompleted),
    ("RunFailed", pb.RunFailed),
    ("SeedTransitioned", pb.SeedTransitioned),
    ("SeedGrafted", pb.SeedGrafted),
    ("IsolationViolationDetected", pb.IsolationViolationDetected),
    ("SeedGradientsMeasured", pb.SeedGradientsMeasured),
    ("CommandRejected", pb.CommandRejected),
    ("BlueprintRegistered", pb.BlueprintRegistered),
    ("BlueprintApproved", pb.BlueprintApproved),
    ("CompileJobQueued", pb.CompileJobQueued),
    ("CompileJobStarted", pb.CompileJobStarted),
    ("CompileJobFailed", pb.CompileJobFailed),
    ("CompileJobSucceeded", pb.CompileJobSucceeded),
    ("ArtifactStored", pb.ArtifactStored),
    ("ArtifactCorrupted", pb.ArtifactCorrupted),
    ("DecisionMade", pb.DecisionMade),
    ("AdaptationCommandIssued", pb.AdaptationCommandIssued),
    ("ConservativeModeChanged", pb.ConservativeModeChanged),
    ("FieldReportIssued", pb.FieldReportIssued),
    ("PolicyTrained", pb.PolicyTrained),
    ("PolicyValidated", pb.PolicyValidation),
    ("PolicyRejected", pb.PolicyValidation),
    ("PolicyPublished", pb.PolicyPublished),
    ("PolicyActivated", pb.PolicyActivation),
    ("PolicyRolledBack", pb.PolicyActivation),
    ("AlertFired", pb.Alert),
    ("AlertResolved", pb.Alert),
    ("TelemetryReported", pb.TelemetryPacket),
)


def build_default_registry() -> Registry:
    registry = Registry()
    for name, message in EVENT_TYPES:
        registry.register(name, message)
    registry.validate()
    return registry


DEFAULT_REGISTRY = build_default_registry()
