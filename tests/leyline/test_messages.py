from __future__ import annotations

import contextlib

import pytest
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from leyline import DecodeError, decode_envelope, decode_payload, new_envelope, pb
from leyline.generate import stale_files
from leyline.registry import DEFAULT_REGISTRY
from tests.leyline.strategies import all_message_classes, messages

MESSAGE_CLASSES = all_message_classes()


def test_every_listed_contract_exists() -> None:
    names = {cls.DESCRIPTOR.name for cls in MESSAGE_CLASSES}
    assert {
        "SystemStatePacket",
        "SeedState",
        "AdaptationCommand",
        "FieldReport",
        "PolicyUpdate",
        "TelemetryPacket",
        "BlueprintDescriptor",
        "CheckpointManifest",
        "EventEnvelope",
    } <= names


@pytest.mark.parametrize("enum_name", list(pb.DESCRIPTOR.enum_types_by_name))
def test_enum_zero_is_unknown(enum_name: str) -> None:
    enum = pb.DESCRIPTOR.enum_types_by_name[enum_name]
    assert enum.values_by_number[0].name.endswith("_UNKNOWN")


def test_lifecycle_has_the_eleven_stages_of_the_spec() -> None:
    stages = [v.name for v in pb.SeedLifecycleStage.DESCRIPTOR.values if v.number != 0]
    assert [s.removeprefix("SEED_STAGE_") for s in stages] == [
        "DORMANT",
        "GERMINATED",
        "TRAINING",
        "BLENDING",
        "SHADOWING",
        "PROBATIONARY",
        "FOSSILIZED",
        "CULLED",
        "EMBARGOED",
        "RESETTING",
        "TERMINATED",
    ]
    assert pb.MessagePriority.Value("MESSAGE_PRIORITY_EMERGENCY") == pb.MESSAGE_PRIORITY_EMERGENCY


def test_generated_bindings_are_fresh() -> None:
    assert stale_files() == [], "run `python -m leyline.generate` and commit the result"


@pytest.mark.parametrize("message_class", MESSAGE_CLASSES, ids=lambda c: c.DESCRIPTOR.name)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_round_trip(message_class: type[Message], data: st.DataObject) -> None:
    message = data.draw(messages(message_class.DESCRIPTOR))
    parsed = message_class()
    parsed.ParseFromString(message.SerializeToString())
    assert parsed == message
    assert parsed.SerializeToString(deterministic=True) == message.SerializeToString(deterministic=True)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_only_raise_decode_error(data: bytes) -> None:
    try:
        envelope = decode_envelope(data)
    except DecodeError:
        return
    with contextlib.suppress(DecodeError):
        decode_payload(envelope)


def sample_envelope() -> pb.EventEnvelope:
    command = pb.AdaptationCommand(
        command_id="c1",
        command_type=pb.COMMAND_TYPE_SEED,
        seed_operation=pb.SeedOperationCommand(operation=pb.SEED_OP_GERMINATE, blueprint_id="BP002"),
    )
    payload = pb.AdaptationCommandIssued(command=command)
    return new_envelope("AdaptationCommandIssued", "command-c1", payload, run_id="r1", epoch=3)


def test_every_truncation_only_raises_decode_error() -> None:
    data = sample_envelope().SerializeToString()
    for cut in range(len(data)):
        try:
            envelope = decode_envelope(data[:cut])
            decode_payload(envelope)
        except DecodeError as error:
            assert error.reason


def test_payload_of_wrong_shape_names_the_event_type() -> None:
    envelope = sample_envelope()
    envelope.payload = b"\x0a\xff\xff\xff"
    with pytest.raises(DecodeError, match="AdaptationCommandIssued"):
        decode_payload(envelope)


def test_unknown_event_type_is_a_decode_error() -> None:
    envelope = sample_envelope()
    envelope.event_type = "NoSuchEvent"
    with pytest.raises(DecodeError, match="NoSuchEvent"):
        decode_payload(envelope)


def test_envelope_round_trips_payload() -> None:
    envelope = decode_envelope(sample_envelope().SerializeToString())
    payload = decode_payload(envelope)
    assert isinstance(payload, pb.AdaptationCommandIssued)
    assert payload.command.seed_operation.blueprint_id == "BP002"
    assert envelope.epoch == 3
    assert envelope.schema_version == DEFAULT_REGISTRY.get("AdaptationCommandIssued").schema_version


def test_new_envelope_refuses_a_payload_of_another_type() -> None:
    with pytest.raises(Exception, match="carries AdaptationCommandIssued"):
        new_envelope("AdaptationCommandIssued", "command-c1", pb.RunStarted())
