"""Hypothesis strategies that build any Leyline message from its protobuf descriptor."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from leyline import pb

F = FieldDescriptor
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
INTEGERS = {
    F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1),
    F.TYPE_FIXED64: (0, 2**64 - 1),
    F.TYPE_INT32: (-(2**31), 2**31 - 1),
    F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1),
    F.TYPE_FIXED32: (0, 2**32 - 1),
}


def all_message_classes() -> list[type[Message]]:
    classes = []
    for name in pb.DESCRIPTOR.message_types_by_name:
        classes.append(getattr(pb, name))
    return classes


def scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in INTEGERS:
        low, high = INTEGERS[kind]
        return st.integers(low, high)
    if kind == F.TYPE_DOUBLE:
        return st.floats(allow_nan=False)
    if kind == F.TYPE_FLOAT:
        return st.floats(width=32, allow_nan=False)
    if kind == F.TYPE_BOOL:
        return st.booleans()
    if kind == F.TYPE_STRING:
        return TEXT
    if kind == F.TYPE_BYTES:
        return st.binary(max_size=24)
    if kind == F.TYPE_ENUM:
        return st.sampled_from([value.number for value in field.enum_type.values])
    raise TypeError(f"no strategy for field {field.full_name}")


def value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == F.TYPE_MESSAGE:
        return messages(field.message_type, depth + 1)
    return scalar(field)


def is_map(field: FieldDescriptor) -> bool:
    return field.type == F.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def field_strategy(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if is_map(field):
        entry = field.message_type.fields_by_name
        key_field, value_field = entry["key"], entry["value"]
        return st.dictionaries(scalar(key_field), value(value_field, depth), max_size=3)
    if field.is_repeated:
        return st.lists(value(field, depth), max_size=3)
    return value(field, depth)


def assign(message: Message, field: FieldDescriptor, data: Any) -> None:
    target = getattr(message, field.name)
    if is_map(field):
        value_field = field.message_type.fields_by_name["value"]
        for key, item in data.items():
            if value_field.type == F.TYPE_MESSAGE:
                target[key].CopyFrom(item)
            else:
                target[key] = item
    elif field.is_repeated:
        if field.type == F.TYPE_MESSAGE:
            for item in data:
                target.add().CopyFrom(item)
        else:
            target.extend(data)
    elif field.type == F.TYPE_MESSAGE:
        target.CopyFrom(data)
    else:
        setattr(message, field.name, data)


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    message_class = getattr(pb, descriptor.name, None) or _nested_class(descriptor)
    fields = [] if depth > 3 else list(descriptor.fields)

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = message_class()
        chosen_oneofs: set[str] = set()
        for field in fields:
            oneof = field.containing_oneof
            # proto3 `optional` fields sit in synthetic one-field oneofs named "_<field>"
            real_oneof = oneof is not None and not oneof.name.startswith("_")
            if real_oneof and oneof is not None and oneof.name in chosen_oneofs:
                continue
            data = draw(st.none() | field_strategy(field, depth))
            if data is None:
                continue
            assign(message, field, data)
            if real_oneof and oneof is not None:
                chosen_oneofs.add(oneof.name)
        return message

    return build()


def _nested_class(descriptor: Descriptor) -> type[Message]:
    names = []
    current: Descriptor | None = descriptor
    while current is not None:
        names.append(current.name)
        current = current.containing_type
    node: Any = pb
    for name in reversed(names):
        node = getattr(node, name)
    return node  # type: ignore[no-any-return]
