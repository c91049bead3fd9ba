"""Leyline: protobuf contracts, envelopes, the event-type registry and signing."""

from leyline import leyline_pb2 as pb
from leyline.envelope import category_of, decode_envelope, decode_payload, new_envelope, stream_name
from leyline.errors import DecodeError
from leyline.registry import DEFAULT_REGISTRY

__all__ = [
    "DEFAULT_REGISTRY",
    "DecodeError",
    "category_of",
    "decode_envelope",
    "decode_payload",
    "new_envelope",
    "pb",
    "stream_name",
]
