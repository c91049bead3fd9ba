"""One-dimensional text[], bytea[] and bigint[] parameters dumped in PostgreSQL's binary array format in one
pass (psycopg's generic list dumper inspects every element and escapes text: ~10 µs an element)."""

from __future__ import annotations

import struct
from typing import Any

from psycopg import adapt, pq

_LENGTH = struct.Struct("!i")
_HEADER = struct.Struct("!iiiii")  # dimensions, has nulls, element type, length, lower bound
_EMPTY = struct.Struct("!iii")
_BIGINT = struct.Struct("!iq")


class TextArray(list[str]):
    pass


class ByteaArray(list[bytes]):
    pass


class BigintArray(list[int]):
    pass


def _array(oid: int, items: list[bytes]) -> bytes:
    if not items:
        return _EMPTY.pack(0, 0, oid)
    pack = _LENGTH.pack
    return _HEADER.pack(1, 0, oid, len(items), 1) + b"".join([pack(len(item)) + item for item in items])


class _TextArrayDumper(adapt.Dumper):
    format = pq.Format.BINARY
    oid = 1009

    def dump(self, obj: Any) -> bytes:
        return _array(25, [item.encode() for item in obj])


class _ByteaArrayDumper(adapt.Dumper):
    format = pq.Format.BINARY
    oid = 1001

    def dump(self, obj: Any) -> bytes:
        return _array(17, obj)


class _BigintArrayDumper(adapt.Dumper):
    format = pq.Format.BINARY
    oid = 1016

    def dump(self, obj: Any) -> bytes:
        if not obj:
            return _EMPTY.pack(0, 0, 20)
        pack = _BIGINT.pack
        return _HEADER.pack(1, 0, 20, len(obj), 1) + b"".join([pack(8, item) for item in obj])


def register(adapters: adapt.AdaptersMap) -> None:
    adapters.register_dumper(TextArray, _TextArrayDumper)
    adapters.register_dumper(ByteaArray, _ByteaArrayDumper)
    adapters.register_dumper(BigintArray, _BigintArrayDumper)
