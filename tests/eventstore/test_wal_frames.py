"""wal.frames, the append hot path's framing: what it writes is what wal.Scan reads back."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given

from eventstore import wal

RECORDS = st.lists(
    st.tuples(
        st.text(min_size=1, max_size=12),
        st.integers(1, 2**40),
        st.integers(0, 2**64 - 1),
        st.binary(max_size=300),
    ),
    min_size=1,
    max_size=40,
)


@given(first=st.integers(1, 2**40), records=RECORDS)
def test_frames_scan_back_with_the_commit_flag_on_the_last(
    first: int, records: list[tuple[str, int, int, bytes]]
) -> None:
    streams = [stream.encode() for stream, _, _, _ in records]
    framed = wal.frames(
        first,
        [version for _, version, _, _ in records],
        [fp for _, _, fp, _ in records],
        streams,
        [payload for _, _, _, payload in records],
    )
    data = b"".join(framed)
    scan = wal.Scan(data, 0, first)
    frames = list(scan)
    assert scan.problem is None and scan.offset == len(data)
    assert [frame.end - frame.offset for frame in frames] == list(map(len, framed))
    assert [(f.position, f.stream, f.stream_version, f.fingerprint) for f in frames] == [
        (first + index, stream, version, fp) for index, (stream, version, fp, _) in enumerate(records)
    ]
    assert [frame.commit for frame in frames] == [False] * (len(records) - 1) + [True]
    for frame, (stream, _, _, payload) in zip(frames, records, strict=True):
        body = frame.offset + wal.HEADER_SIZE + len(stream.encode())
        assert data[body : frame.end] == payload
