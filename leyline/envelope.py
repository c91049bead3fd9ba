"""Building and decoding event envelopes (SPEC §4)."""

from __future__ import annotations

import time
import uuid

from google.protobuf.message import Message

from leyline import leyline_pb2 as pb
from leyline.errors import DecodeError, LeylineError
from leyline.registry import DEFAULT_REGISTRY, Registry

EventEnvelope = pb.EventEnvelope


def category_of(stream: str) -> str:
    """The category of a stream is the part before the first '-' (`seed-r1.2` → `seed`)."""
    return stream.split("-", 1)[0]


def stream_name(category: str, identifier: str) -> str:
    if not category or "-" in category:
        raise ValueError(f"category must be non-empty and contain no '-', got {category!r}")
    return f"{category}-{identifier}"


def new_event_id() -> str:
    return uuid.uuid4().hex


def new_envelope(
    event_type: str,
    stream: str,
    payload: Message,
    *,
    run_id: str = "",
    epoch: int | None = None,
    correlation_id: str = "",
    causation_id: str = "",
    source: str = "",
    priority: int = pb.MESSAGE_PRIORITY_NORMAL,
    event_id: str | None = None,
    occurred_at_ns: int | None = None,
    registry: Registry = DEFAULT_REGISTRY,
) -> EventEnvelope:
    """An unsigned envelope for payload; the store fills in stream_version and global_position."""
    event = registry.get(event_type)
    if not isinstance(payload, event.message):
        raise LeylineError(f"{event_type} carries {event.message.__name__}, got {type(payload).__name__}")
    envelope = EventEnvelope(
        event_id=event_id or new_event_id(),
        event_type=event_type,
        stream=stream,
        schema_version=event.schema_version,
        occurred_at_ns=time.time_ns() if occurred_at_ns is None else occurred_at_ns,
        run_id=run_id,
        correlation_id=correlation_id,
        causation_id=causation_id,
        source=source,
        payload=payload.SerializeToString(),
        priority=priority,  # type: ignore[arg-type]
    )
    if epoch is not None:
        envelope.epoch = epoch
    return envelope


def decode_envelope(data: bytes) -> EventEnvelope:
    """Parse untrusted bytes into an envelope; anything malformed raises DecodeError."""
    envelope = EventEnvelope()
    try:
        envelope.ParseFromString(data)
    except Exception as exc:  # the C and Python protobuf runtimes raise different types
        raise DecodeError("", f"not an EventEnvelope ({exc})") from None
    if not envelope.event_type:
        raise DecodeError("", "envelope has no event_type")
    return envelope


def decode_payload(envelope: EventEnvelope, registry: Registry = DEFAULT_REGISTRY) -> Message:
    """The envelope's payload as its current message class, upcast from older schema versions."""
    name = envelope.event_type
    try:
        event = registry.get(name)
        data = registry.upcast(name, envelope.schema_version, envelope.payload)
        message = event.message()
        message.ParseFromString(data)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(name, str(exc) or type(exc).__name__) from None
    return message
