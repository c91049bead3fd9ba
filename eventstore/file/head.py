"""HEAD: the committed head and a "writing" flag, shared by every process that opens the store.

HEAD is mapped shared, so publishing a head is a memory store, not a write call. Readers compare its head
with their own to learn that another process appended; an appender raises the writing flag before it
touches a segment and lowers it when it publishes the new head, so the next appender sees from HEAD alone
whether anything may have changed (a head other than its own, or a flag left raised by a writer that died
mid-batch). In-process waiters (subscriptions) are woken through `HeadWaiters`.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
from pathlib import Path

from eventstore.file.segments import LogIndex

HEAD_STRUCT = struct.Struct("<QQ")  # head, writing flag
CROSS_PROCESS_POLL_S = 0.02


class SharedHead:
    def __init__(self, path: Path) -> None:
        self._map = _map_head(path)

    def publish(self, head: int) -> None:
        """Announce the head to other processes and lower the writing flag."""
        HEAD_STRUCT.pack_into(self._map, 0, head, 0)

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
        self._map.close()


def _map_head(path: Path) -> mmap.mmap:
    """HEAD mapped shared; a new (or older, shorter) HEAD is zero-extended first, which no process
    can mind: the bytes already there are kept."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size < HEAD_STRUCT.size:
            os.ftruncate(fd, HEAD_STRUCT.size)
        return mmap.mmap(fd, HEAD_STRUCT.size)
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
