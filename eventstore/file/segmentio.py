"""The writer's I/O on segments: creating one, writing framed records at its end, extending it ahead with
zeros, cutting those zeros back, and fdatasync'ing what was written.

`preallocate=True` extends a segment with written zeros ahead of its data (EXTEND_AHEAD at a time, on a
write smaller than EXTEND_BELOW): an fdatasync of records written into that space need not also grow the
file. The file size is then no longer the end of the data; the records and the committed heads are
(wal.Scan ends at the zeros). A segment is cut back to its data when the log rolls to the next one and
when its writer closes without another process having appended meanwhile (writer.py decides when).
"""

from __future__ import annotations

import os

import crc32c

from eventstore.file.durability import EXTEND_AHEAD, EXTEND_BELOW, raise_typed
from eventstore.file.segments import LogIndex, Segment, fsync_directory

# per segment written in a group: its end and CRC before the group (what a failed group is cut back to)
Starts = dict[Segment, tuple[int, int]]


class SegmentIO:
    def __init__(self, log: LogIndex, segment_size: int, preallocate: bool) -> None:
        self.log = log
        self.segment_size = segment_size
        self.extend_ahead = preallocate
        self.unsynced: set[Segment] = set()
        self.written = 0  # bytes written since the writer last took them (for BYTES_WRITTEN)

    def new_segment(self, first: int) -> Segment:
        try:
            segment = self.log.open_segment(first, create=True)
            fsync_directory(self.log.path)
        except OSError as exc:
            raise_typed(exc, self.log.segment_path(first))
        return segment

    def write(self, segment: Segment, chunks: list[bytes], starts: Starts) -> None:
        """Write chunks at the segment's end with one pwrite, advancing its end and CRC."""
        buffer = chunks[0] if len(chunks) == 1 else b"".join(chunks)  # one request's batch: no copy
        end = segment.end
        starts.setdefault(segment, (end, segment.crc))
        try:
            written = os.pwrite(segment.fd, buffer, end)
            while written < len(buffer):
                written += os.pwrite(segment.fd, memoryview(buffer)[written:], end + written)
        except OSError as exc:
            raise_typed(exc, self.log.segment_path(segment.first))
        segment.crc = crc32c.crc32c(buffer, segment.crc)
        segment.end = end = end + len(buffer)
        self.unsynced.add(segment)
        self.written += len(buffer)
        if self.extend_ahead and len(buffer) < EXTEND_BELOW and segment.allocated < end < self.segment_size:
            self._extend(segment)

    def undo(self, starts: Starts) -> None:
        """Cut the segments a failed group wrote to back to where the group started."""
        for touched, (start, crc) in starts.items():
            os.ftruncate(touched.fd, start)
            touched.end, touched.crc, touched.allocated = start, crc, start

    def _extend(self, segment: Segment) -> None:
        """Write zeros ahead of the segment's data (best effort: a disk too full for them fails the next
        record's write instead, as it would without them)."""
        ahead = min(EXTEND_AHEAD, self.segment_size - segment.end)
        try:
            segment.allocated = segment.end + os.pwrite(segment.fd, bytes(ahead), segment.end)
        except OSError:
            segment.allocated = segment.end

    def cut_back(self, segment: Segment) -> None:
        """Cut the zeros extended ahead off a segment this writer leaves (under the file lock)."""
        if segment.allocated > segment.end:
            os.ftruncate(segment.fd, segment.end)
            segment.allocated = segment.end

    def sync(self) -> None:
        """fdatasync every segment written since the last sync."""
        for segment in self.unsynced:
            try:
                os.fdatasync(segment.fd)
            except OSError as exc:
                raise_typed(exc, self.log.segment_path(segment.first))
        self.unsynced.clear()
