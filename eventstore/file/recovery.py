"""Recovery: bring a `LogIndex` up to what the segments hold, from the INDEX checkpoint and a scan.

On open (under the file lock) the indexes come from the INDEX checkpoint when it is valid and every
checkpointed segment's bytes still match their recorded CRC32C (checked in bulk); the records after it, or
all of them when there is no usable checkpoint, are scanned one by one with their CRC32C checked and
indexed. A damaged or incomplete record (or batch) in the last segment after which no valid record follows
(before a page of zeros: a write into the zeros extended ahead can reach the disk with a later page and
without an earlier one, wal.valid_frame_after) is a torn tail: it is truncated from the start of its batch
and reported in the `RecoveryReport`. Damage
anywhere else raises CorruptLogError naming segment, byte offset and position; nothing is skipped. Damage
to the very last record is indistinguishable from a torn write, and is treated as one, unless the store
recorded it as committed.

Committed heads: INDEX (written on close) and HEAD's durable head each record a head whose records were
made durable. Open holds the segments to the highest of them: segments that end below it (deleted or
truncated segment files, a segment replaced by other records, a record damaged after it was committed)
raise CommittedTailMissing naming the expected and the found head; nothing that cannot be a torn write is
ever truncated. Both records are read before the scan, so an append committed meanwhile cannot look lost.

Read-only (`FileStore(..., read_only=True)`), open classifies the tail the same way but truncates nothing:
a torn tail is left in place and reported (`RecoveryReport.torn_bytes`).

The same catch-up runs, cheaply, before every append (records other processes committed) and on reads
when HEAD moved (without repairing: it stops at a batch still being written).
"""

from __future__ import annotations

import logging
import mmap
import os
from array import array
from dataclasses import dataclass, field

import crc32c

from eventstore import indexfile, metrics, wal
from eventstore.api import CommittedTailMissing, CorruptLogError
from eventstore.file.head import SharedHead
from eventstore.file.segments import INDEX_FILE, LogIndex, Segment
from eventstore.idindex import RECENT_LIMIT

LOG = logging.getLogger(__name__)


@dataclass
class RecoveryReport:
    """What opening the store found and did."""

    segments: int = 0
    restored: int = 0  # events whose index came from the INDEX checkpoint (their bytes CRC-checked in bulk)
    records: int = 0  # events scanned record by record
    head: int = 0
    truncated_bytes: int = 0
    truncated_segment: str | None = None
    truncated_offset: int | None = None
    truncated_reason: str | None = None
    torn_bytes: int = 0  # a torn tail found read-only, and left in place
    committed_head: int = 0  # the highest committed head INDEX or HEAD recorded
    removed_temporaries: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    def describe(self) -> str:
        text = f"scanned {self.records} records in {self.segments} segments, head position {self.head}"
        if self.restored:
            text += f" ({self.restored} indexed from the checkpoint, their segments' CRC32C verified)"
        if self.truncated_bytes:
            text += (
                f"; truncated a torn tail of {self.truncated_bytes} bytes "
                f"in segment {self.truncated_segment} "
                f"at byte offset {self.truncated_offset} ({self.truncated_reason})"
            )
        if self.torn_bytes:
            text += (
                f"; found a torn tail of {self.torn_bytes} bytes in segment {self.truncated_segment} "
                f"at byte offset {self.truncated_offset} ({self.truncated_reason}), left in place "
                "(opened read-only; `esper recover` truncates it)"
            )
        if self.removed_temporaries:
            text += f"; removed {len(self.removed_temporaries)} leftover temporary file(s)"
        return text


class Recovery:
    def __init__(self, log: LogIndex, head: SharedHead, report: RecoveryReport) -> None:
        self.log = log
        self.head = head
        self.report = report
        self.committed = 0  # the highest committed head recorded when the store was opened
        self.committed_source = ""

    def open(self, repair: bool) -> None:
        """Index the whole log, holding it to the committed heads recorded; repair (truncate) a torn tail
        unless read-only. Under the file lock."""
        self.check_segment_names()
        state = indexfile.load(self.log.path / INDEX_FILE)
        self.committed, self.committed_source = committed_head(state, self.head.durable())
        self.report.committed_head = self.committed
        self.report.restored = self.restore_index(state)
        self.catch_up(repair=repair, full=True)
        log = self.log
        if log.head < self.committed:
            last = log.segments[-1] if log.segments else None
            raise CommittedTailMissing(
                last.name if last else wal.segment_name(log.head + 1),
                last.end if last else 0,
                log.head,
                self.committed,
                self.committed_source,
                "the last segment ends cleanly" if last else "no segment file is left",
            )

    def check_segment_names(self) -> None:
        for name in sorted(os.listdir(self.log.path)):
            if name.endswith(".wal") and wal.segment_first_position(name) is None:
                raise CorruptLogError(name, 0, 0, "a .wal file whose name is not a position")

    def restore_index(self, state: indexfile.IndexState | None) -> int:
        """Take the indexes from a valid INDEX checkpoint; the head it restored (0 if none was usable)."""
        log = self.log
        if state is None or not state.segments:
            return 0
        segments: list[Segment] = []
        maps: list[mmap.mmap] = []
        views: list[memoryview] = []  # each segment's committed bytes, mapped
        usable = False
        try:
            for saved in state.segments:
                segment = Segment(saved.first, os.open(log.segment_path(saved.first), log.segment_flags))
                segments.append(segment)
                size = os.fstat(segment.fd).st_size
                if size < saved.end:
                    return 0
                if saved.end:
                    maps.append(mmap.mmap(segment.fd, saved.end, access=mmap.ACCESS_READ))
                views.append(memoryview(maps[-1]) if saved.end else memoryview(b""))
                if crc32c.crc32c(views[-1]) != saved.crc:
                    return 0  # damage, or a checkpoint that is wrong: the scan tells which
                if size > saved.end and saved is not state.segments[-1]:
                    return 0  # bytes after a full segment's data: the scan names them
                segment.offsets, segment.end, segment.crc = saved.offsets, saved.end, saved.crc
            usable = indexfile.describes(state, views)
        except (FileNotFoundError, IsADirectoryError):
            return 0
        finally:
            for view in views:
                view.release()
            for data in maps:
                data.close()
            if not usable:
                for segment in segments:
                    os.close(segment.fd)
        if not usable:
            return 0
        log.adopt(segments)
        log.streams = state.streams
        log.ids.load_runs(state.runs)
        log.head = state.head
        return state.head

    def save_index(self) -> None:
        log = self.log
        segments = [
            indexfile.SegmentIndex(segment.first, segment.end, segment.crc, segment.offsets)
            for segment in log.segments
        ]
        state = indexfile.IndexState(log.head, segments, log.streams, log.ids.runs())
        indexfile.save(log.path / INDEX_FILE, state)

    def later_segments(self, full: bool) -> list[int]:
        """Segments after our last one: all of them (a directory listing, on open) or the one that would
        follow our head (one stat, when HEAD says another process may have written: it may have rolled
        the log, or crashed right after creating a segment)."""
        log = self.log
        if full:
            firsts = []
            for name in os.listdir(log.path):
                first = wal.segment_first_position(name)
                if first is not None and (not log.firsts or first > log.firsts[-1]):
                    firsts.append(first)
            return sorted(firsts)
        following = log.head + 1
        if log.firsts and log.firsts[-1] == following:
            return []
        return [following] if os.path.exists(log.segment_path(following)) else []

    def catch_up(self, repair: bool, full: bool = False) -> None:
        """Index every committed record after our head; under the file lock (repair) fix a torn tail."""
        log = self.log
        if log.segments and not full:
            if not self.head.others_may_have_written(log.head):
                return  # the common case on every append
            last = log.segments[-1]
            if self._nothing_after(last) and not self.later_segments(full):
                return
        fps, positions = array("Q"), array("Q")
        retried = False
        try:
            while True:
                if not log.segments:
                    later = self.later_segments(full)
                    if not later:
                        return
                    if later[0] != 1:
                        raise CorruptLogError(wal.segment_name(later[0]), 0, 1, "the log does not start at 1")
                    log.open_segment(later[0])
                segment = log.segments[-1]
                size = os.fstat(segment.fd).st_size
                problem: tuple[int, int, str, int] | None = None
                data = b""
                base = segment.end
                if size > segment.end:
                    data = os.pread(segment.fd, size - segment.end, segment.end)
                    problem = self._apply(segment, data, fps, positions)
                later = self.later_segments(full)
                if problem is None:
                    if not later:
                        return
                    if later[0] != log.head + 1:
                        raise CorruptLogError(
                            wal.segment_name(later[0]),
                            0,
                            log.head + 1,
                            f"segment starts at position {later[0]}, expected {log.head + 1}",
                        )
                    log.open_segment(later[0])
                    retried = False
                    continue
                offset, position, reason, search_from = problem
                if later and not repair and not retried:
                    retried = True  # a writer may have completed this batch before creating the next file
                    continue
                if later:
                    raise CorruptLogError(segment.name, offset, position, reason)
                if not (repair or full):
                    return  # a read catching up: a batch still being written
                if wal.valid_frame_after(data, search_from - base, position, base) is not None:
                    raise CorruptLogError(segment.name, offset, position, reason)
                if log.head < self.committed:
                    raise CommittedTailMissing(
                        segment.name,
                        offset,
                        log.head,
                        self.committed,
                        self.committed_source,
                        f"the record at byte offset {offset} (global position {position}): {reason}",
                    )
                if repair:
                    self._truncate(segment, segment.end, size, reason)
                else:
                    self._report_torn(segment, segment.end, size, reason)
                return
        finally:
            self._index_ids(fps, positions)

    def _nothing_after(self, segment: Segment) -> bool:
        """Whether no record follows the segment's end: the file ends there, or zeros extended ahead do."""
        size = os.fstat(segment.fd).st_size
        return size == segment.end or wal.zeros_from(os.pread(segment.fd, wal.HEADER_SIZE, segment.end), 0)

    def _apply(
        self, segment: Segment, data: bytes, fps: array, positions: array
    ) -> tuple[int, int, str, int] | None:
        """Index the committed batches in data (read at segment.end); the first problem, if any.

        A problem is (offset, position, reason, where a search for valid records after it starts).
        """
        log = self.log
        base = segment.end
        scan = wal.Scan(data, 0, log.head + 1)
        pending: list[wal.Frame] = []
        streams = log.streams
        for frame in scan:
            pending.append(frame)
            if not frame.commit:
                continue
            for item in pending:
                positions_of = streams.get(item.stream)
                if positions_of is None:
                    positions_of = streams[item.stream] = array("Q")
                if item.stream_version != len(positions_of) + 1:
                    raise CorruptLogError(
                        segment.name,
                        base + item.offset,
                        item.position,
                        f"stream {item.stream!r} version {item.stream_version} follows {len(positions_of)}",
                    )
                positions_of.append(item.position)
                segment.offsets.append(base + item.offset)
                fps.append(item.fingerprint)
                positions.append(item.position)
            log.head = frame.position
            segment.end = base + frame.end
            pending.clear()
        if segment.end > base:
            segment.crc = crc32c.crc32c(memoryview(data)[: segment.end - base], segment.crc)
        if scan.problem is not None:
            return base + scan.offset, scan.next_position, scan.problem, base + scan.offset
        if pending:
            reason = "incomplete batch (no commit record)"
            return base + pending[0].offset, pending[0].position, reason, base + len(data)
        return None

    def _index_ids(self, fps: array, positions: array) -> None:
        if len(fps) >= RECENT_LIMIT:
            self.log.ids.bulk_load(fps, positions)
        else:
            self.log.ids.add_many(fps, positions)

    def _report_torn(self, segment: Segment, offset: int, size: int, reason: str) -> None:
        report = self.report
        report.torn_bytes = size - offset
        report.truncated_segment = segment.name
        report.truncated_offset = offset
        report.truncated_reason = reason

    def _truncate(self, segment: Segment, offset: int, size: int, reason: str) -> None:
        os.ftruncate(segment.fd, offset)
        os.fsync(segment.fd)
        report = self.report
        report.truncated_bytes += size - offset
        report.truncated_segment = segment.name
        report.truncated_offset = offset
        report.truncated_reason = reason
        metrics.TRUNCATED_BYTES.inc(size - offset)
        LOG.warning(
            "%s: truncated a torn tail of %d bytes in segment %s at byte offset %d (%s)",
            self.log.path,
            size - offset,
            segment.name,
            offset,
            reason,
        )


def committed_head(state: indexfile.IndexState | None, durable: int | None) -> tuple[int, str]:
    """The highest committed head the store recorded, and which file recorded it ((0, "") if none)."""
    claims = [(durable or 0, "HEAD"), (state.head if state is not None else 0, "INDEX")]
    head, source = max(claims)
    return (head, source) if head > 0 else (0, "")
