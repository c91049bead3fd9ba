"""HEAD: the committed head and a "writing" flag, shared by every process that opens the store.

HEAD is mapped shared, so publishing a head is a memory store, not a write call. Readers compare its head
with their own to learn that another process appended; an appender raises the writing flag before it
touches a segment and lowers it when it publishes the new head, so the next appender sees from HEAD alone
whether anything may have changed (a head other than its own, or a flag left raised by a writer that died
mid-batch). In-process waiters (subscriptions) are woken through `HeadWaiters`.

HEAD also records the highest head known *durable* (fdatasync'ed; with fsync `interval:<ms>` that lags
the published head), with a check word: a committed head that recovery and `esper verify` hold the
segments to. Without a valid check word (an older, shorter HEAD, or garbage) the record is ignored.
Layout (little-endian u64 each): head, writing flag, durable head, durable head XOR DURABLE_CHECK.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
from pathlib import Path

from eventstore.file.segments import LogIndex

HEAD_STRUCT = struct.Struct("<QQ")  # head, writing flag
DURABLE_STRUCT = struct.Struct("<QQ")  # durable head, durable head ^ DURABLE_CHECK; after HEAD_STRUCT
HEAD_SIZE = HEAD_STRUCT.size + DURABLE_STRUCT.size
DURABLE_CHECK = 0x5EAD_C0DE_D00D_F00D
CROSS_PROCESS_POLL_S = 0.02


def decode_durable(data: bytes | bytearray | mmap.mmap) -> int | None:
    """The durable head HEAD's bytes record, or None when there is none with a valid check word."""
    if len(data) < HEAD_SIZE:
        return None
    durable, check = DURABLE_STRUCT.unpack_from(data, HEAD_STRUCT.size)
    return int(durable) if check == durable ^ DURABLE_CHECK and durable > 0 else None


def read_durable(path: Path) -> int | None:
    """The durable head recorded in the HEAD file at path (None if absent, unreadable or unchecked)."""
    try:
        with open(path, "rb") as file:
            return decode_durable(file.read(HEAD_SIZE))
    except OSError:
        return None


class SharedHead:
    """HEAD mapped shared; read-only, it is mapped for reading (or, shorter than this format, copied)."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self._map: mmap.mmap | bytearray = _map_head_read_only(path) if read_only else _map_head(path)

    def publish(self, head: int, durable: bool) -> None:
        """Announce the head to other processes and lower the writing flag; `durable`: the head's records
        are fdatasync'ed."""
        HEAD_STRUCT.pack_into(self._map, 0, head, 0)
        if durable:
            self.mark_durable(head)

    def mark_durable(self, head: int) -> None:
        """Record that the records up to head are durable (never lowering what another process recorded)."""
        recorded = decode_durable(self._map)
        if recorded is None or recorded < head:
            DURABLE_STRUCT.pack_into(self._map, HEAD_STRUCT.size, head, head ^ DURABLE_CHECK)

    def durable(self) -> int | None:
        return decode_durable(self._map)

    def raise_writing_flag(self, head: int) -> None:
        HEAD_STRUCT.pack_into(self._map, 0, head, 1)

    def others_may_have_written(self, head: int) -> bool:
        found, writing = HEAD_STRUCT.unpack_from(self._map)
        return bool(found != head or writing != 0)

    def hint(self) -> int:
        """The last head any process published."""
        head: int = HEAD_STRUCT.unpack_from(self._map)[0]
        return head

    def close(self) -> None:
        if isinstance(self._map, mmap.mmap):
            self._map.close()


def _map_head(path: Path) -> mmap.mmap:
    """HEAD mapped shared; a new (or older, shorter) HEAD is zero-extended first, which no process
    can mind: the bytes already there are kept."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size < HEAD_SIZE:
            os.ftruncate(fd, HEAD_SIZE)
        return mmap.mmap(fd, HEAD_SIZE)
    finally:
        os.close(fd)


def _map_head_read_only(path: Path) -> mmap.mmap | bytearray:
    """HEAD mapped for reading; a missing or shorter HEAD (no writer since this format) is read as it is,
    zero-extended, and not followed: reads then see other processes' appends by their own catch-up."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return bytearray(HEAD_SIZE)
    try:
        if os.fstat(fd).st_size >= HEAD_SIZE:
            return mmap.mmap(fd, HEAD_SIZE, access=mmap.ACCESS_READ)
        data = os.pread(fd, HEAD_SIZE, 0)
        return bytearray(data.ljust(HEAD_SIZE, b"\0"))
    finally:
        os.close(fd)


class HeadWaiters:
    """Threads of this process waiting for the head to reach a position."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._waiting = 0  # threads in wait_for: a commit notifies only when there are some

    def wait_for(self, log: LogIndex, position: int, timeout: float) -> None:
        """Wait until the log's head reaches position, for at most timeout seconds (or the cross-process
        poll period, whichever is shorter)."""
        with self._changed:
            self._waiting += 1
            try:
                if log.head < position:
                    self._changed.wait(min(timeout, CROSS_PROCESS_POLL_S))
            finally:
                self._waiting -= 1

    def notify(self) -> None:
        # A waiter counts itself before it compares heads, under the condition's lock: if it is not
        # counted yet, it will see the new head and not wait.
        if self._waiting:
            with self._changed:
                self._changed.notify_all()
