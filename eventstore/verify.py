"""Integrity check of a whole log (`esper verify`), without repairing anything.

File store: every segment is read in order and every record checked (magic, length, CRC32C, the position
following on from the previous one, the segment's name matching its first position, stream versions
following on per stream, batches closed by a commit record). The first problem is reported with its
segment, byte offset and global position, and classified: a *torn tail* (damage in the last segment with
no valid record after it before a page of zeros, wal.valid_frame_after; `esper recover` truncates it) or
*corruption* (anything else, which no tool repairs silently). A torn tail can also be an append in
progress by another process. The committed heads the store recorded (INDEX, HEAD) are held against the
segments as open does (eventstore.file.recovery): a log that ends below one, or a damaged tail below one,
is corruption, never a torn tail. Verify reads every file defensively, as open does, and agrees with it:
what open would refuse, verify reports as corruption.

PostgreSQL: positions 1..head without a gap, stream versions following on, every row's envelope parsing
and carrying the row's position, stream version and event id.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eventstore import indexfile, wal
from eventstore.file.head import read_durable
from eventstore.file.recovery import committed_head
from eventstore.file.segments import HEAD_FILE, INDEX_FILE, read_marker
from leyline import pb


@dataclass
class Problem:
    segment: str
    offset: int
    position: int
    reason: str
    torn_tail: bool

    def describe(self) -> str:
        kind = "torn tail" if self.torn_tail else "corrupt record"
        text = f"{kind} in segment {self.segment} at byte offset {self.offset} "
        text += f"(global position {self.position}): {self.reason}"
        if self.torn_tail:
            text += "; `esper recover` truncates it (or an append was in progress)"
        return text


@dataclass
class VerifyReport:
    location: str
    segments: int = 0
    records: int = 0
    head: int = 0
    streams: int = 0
    bytes: int = 0
    problem: Problem | None = None
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["ok"] = self.ok
        return document


def verify_location(
    location: str | os.PathLike[str], progress: Callable[[int], None] | None = None
) -> VerifyReport:
    from eventstore import is_database_url

    if is_database_url(location):
        return verify_postgres(str(location))
    return verify_file_log(Path(location), progress)


def verify_file_log(path: Path, progress: Callable[[int], None] | None = None) -> VerifyReport:
    """progress, if given, is called with the number of bytes checked so far in the current segment."""
    read_marker(path)
    state = indexfile.load(path / INDEX_FILE)
    committed, source = committed_head(state, read_durable(path / HEAD_FILE))
    report = VerifyReport(str(path))
    names = sorted(name for name in os.listdir(path) if name.endswith(".wal"))
    versions: dict[str, int] = {}
    position = 1
    last_size = 0
    for index, name in enumerate(names):
        last = index == len(names) - 1
        first = wal.segment_first_position(name)
        if first != position:
            expected = f"expected {wal.segment_name(position)}"
            report.problem = Problem(
                name, 0, position, f"segment name does not follow on ({expected})", False
            )
            break
        data = (path / name).read_bytes()
        report.segments += 1
        report.bytes += len(data)
        last_size = len(data)
        scan = wal.Scan(data, 0, position)
        batch_start: wal.Frame | None = None
        for frame in scan:
            batch_start = batch_start or frame
            expected_version = versions.get(frame.stream, 0) + 1
            if frame.stream_version != expected_version:
                reason = (
                    f"stream {frame.stream!r} version {frame.stream_version}, expected {expected_version}"
                )
                report.problem = Problem(name, frame.offset, frame.position, reason, False)
                break
            versions[frame.stream] = expected_version
            if frame.commit:
                batch_start = None
                report.records = report.head = frame.position
            if progress is not None and frame.position % 4096 == 0:
                progress(frame.end)
        if report.problem is not None:
            break
        position = scan.next_position
        if scan.problem is not None or batch_start is not None:
            if scan.problem is not None:
                offset, at, reason = scan.offset, scan.next_position, scan.problem
                torn = last and wal.valid_frame_after(data, offset, at) is None
            else:
                assert batch_start is not None
                offset, at = batch_start.offset, batch_start.position
                reason = "incomplete batch (no commit record)"
                torn = last  # the data ends inside the batch: nothing follows it
            if torn and at <= committed:
                torn = False
                reason += f", but {source} records committed head {committed}: not a torn write"
            report.problem = Problem(name, offset, at, reason, torn)
            break
    if report.problem is None and report.head < committed:
        last_name = names[-1] if names else wal.segment_name(1)
        reason = (
            f"the segments hold only up to head {report.head}, but {source} records committed head "
            f"{committed}: segment files are missing, truncated or replaced; restore the log from a copy"
        )
        report.problem = Problem(last_name, last_size, report.head + 1, reason, False)
    report.streams = len(versions)
    report.checked = ["segment names", "framing", "CRC32C", "positions", "stream versions", "batch commits"]
    return report


def verify_postgres(url: str, schema: str = "esper") -> VerifyReport:
    import sqlalchemy as sa

    from eventstore.postgres import PostgresStore, reads

    store = PostgresStore(url, create=False, schema=schema)
    report = VerifyReport(store._safe_url())
    table = f"{schema}.events"
    versions: dict[str, int] = {}
    expected = 1
    try:
        with store.engine.connect() as connection:
            head = reads.head(store.tables, connection)
            columns = store.tables.events.c
            rows = connection.execute(
                sa.select(
                    columns.position, columns.event_id, columns.stream, columns.stream_version, columns.data
                )
                .where(columns.position <= head)
                .order_by(columns.position)
                .execution_options(yield_per=5000)
            )
            for position, event_id, stream, stream_version, data in rows:
                problem = _row_problem(position, expected, event_id, stream, stream_version, data, versions)
                if problem:
                    report.problem = Problem(table, 0, expected, problem, False)
                    break
                versions[stream] = stream_version
                expected += 1
                report.bytes += len(data)
        if report.problem is None and expected - 1 != head:
            report.problem = Problem(
                table, 0, expected, f"head row says {head}, rows end at {expected - 1}", False
            )
    finally:
        store.close()
    report.records = expected - 1
    report.head = head
    report.streams = len(versions)
    report.checked = ["positions", "stream versions", "envelopes"]
    return report


def _row_problem(
    position: int,
    expected: int,
    event_id: str,
    stream: str,
    stream_version: int,
    data: bytes,
    versions: dict[str, int],
) -> str | None:
    if position != expected:
        return f"position {expected} is missing (next row holds {position})"
    if stream_version != versions.get(stream, 0) + 1:
        return f"stream {stream!r} version {stream_version} follows {versions.get(stream, 0)}"
    envelope = pb.EventEnvelope()
    try:
        envelope.ParseFromString(data)
    except Exception as exc:  # the C and Python protobuf runtimes raise different types
        return f"envelope does not parse ({exc})"
    if (envelope.global_position, envelope.stream_version, envelope.event_id, envelope.stream) != (
        position,
        stream_version,
        event_id,
        stream,
    ):
        return "envelope does not match its row"
    return None
