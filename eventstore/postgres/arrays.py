"""One-dimensional text[], bytea[] and bigint[] parameters encoded in PostgreSQL's binary array format in
one pass (psycopg's generic list dumper inspects every element and escapes text: ~10 µs an element)."""

from __future__ import annotations

import struct
from collections.abc import Iterable

TEXT_ARRAY, BYTEA_ARRAY, BIGINT_ARRAY = 1009, 1001, 1016  # the array types' oids
_TEXT, _BYTEA, _BIGINT_OID = 25, 17, 20
_LENGTH = struct.Struct("!i")
_HEADER = struct.Struct("!iiiii")  # dimensions, has nulls, element type, length, lower bound
_EMPTY = struct.Struct("!iii")
_BIGINT = struct.Struct("!iq")


def _array(oid: int, items: list[bytes]) -> bytes:
    if not items:
        return _EMPTY.pack(0, 0, oid)
    pack = _LENGTH.pack
    return _HEADER.pack(1, 0, oid, len(items), 1) + b"".join([pack(len(item)) + item for item in items])


def text_array(items: Iterable[str]) -> bytes:
    return _array(_TEXT, [item.encode() for item in items])


def bytea_array(items: list[bytes]) -> bytes:
    return _array(_BYTEA, items)


def bigint_array(items: list[int]) -> bytes:
    if not items:
        return _EMPTY.pack(0, 0, _BIGINT_OID)
    pack = _BIGINT.pack
    return _HEADER.pack(1, 0, _BIGINT_OID, len(items), 1) + b"".join([pack(8, item) for item in items])
