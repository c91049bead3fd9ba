"""walbatch: the compiled batch operations (eventstore._walc) and their pure-Python fallbacks produce the
same objects byte for byte, and what they frame is what wal.Scan and the readers read back."""

from __future__ import annotations

from array import array
from pathlib import Path

import crc32c
import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from eventstore import wal, walbatch
from eventstore.api import InvalidEvent
from leyline import pb

try:
    from eventstore import _walc
except ImportError:
    _walc = None  # type: ignore[assignment]

compiled = pytest.mark.skipif(
    _walc is None, reason="eventstore._walc is not built (bash ops/bootstrap.sh install builds it)"
)

TEXT = st.text(min_size=1, max_size=24)
ENVELOPES = st.lists(
    st.builds(
        pb.EventEnvelope,
        event_id=TEXT,
        event_type=TEXT,
        stream=st.sampled_from(["run-a", "seed-b.1", "ünïcode-ß", "x" * 300]) | TEXT,
        stream_version=st.integers(0, 2**64 - 1),
        occurred_at_ns=st.integers(-(2**63), 2**63 - 1),
        epoch=st.integers(0, 2**32 - 1),
        payload=st.binary(max_size=400),
        run_id=st.text(max_size=10),
    ),
    min_size=1,
    max_size=30,
)


@compiled
@settings(max_examples=200)
@given(events=ENVELOPES)
def test_keys_read_from_the_serialized_envelopes_are_the_attributes(events: list[pb.EventEnvelope]) -> None:
    payloads = [event.SerializeToString() for event in events]
    assert _walc.keys(payloads) == walbatch.keys_python(events, payloads)


@compiled
def test_keys_find_the_fields_in_any_order_and_give_the_fingerprints_as_an_array() -> None:
    """The reader stops once it has fields 1-3, wherever they stand (here after the payload and run_id)."""
    head = pb.EventEnvelope(payload=b"p" * 300, run_id="r").SerializeToString()
    keys = pb.EventEnvelope(stream="run-a", event_type="T", event_id="e1").SerializeToString()
    event = pb.EventEnvelope.FromString(head + keys)
    found = _walc.keys([head + keys, event.SerializeToString()])
    assert found == walbatch.keys_python([event, event], [])
    assert found is not None and found[1].typecode == "Q" and found[0][0] is found[0][1]


@compiled
def test_keys_give_a_stream_name_the_same_str_from_batch_to_batch_and_survive_the_table_filling_up() -> None:
    """Stream names are kept from call to call (decoded and hashed once); past the table's bound (4096
    names) it empties and fills again, and every call still reads what the attributes hold."""
    events = [
        pb.EventEnvelope(event_id=f"e{i}", event_type="T", stream=f"run-{i % 5000}") for i in range(6000)
    ]
    payloads = [event.SerializeToString() for event in events]
    first = _walc.keys(payloads[:1])
    for start in range(0, 6000, 700):
        batch = slice(start, start + 700)
        assert _walc.keys(payloads[batch]) == walbatch.keys_python(events[batch], payloads[batch])
    again = _walc.keys(payloads[:1])
    assert first is not None and again is not None and again[0] == first[0] == ["run-0"]
    held = _walc.keys(payloads[:1])
    assert held is not None and held[0][0] is again[0][0]


@pytest.mark.parametrize("missing", ["event_id", "event_type", "stream"])
def test_an_event_without_an_id_type_or_stream_is_invalid_either_way(missing: str) -> None:
    event = pb.EventEnvelope(event_id="e1", event_type="T", stream="run-a")
    event.ClearField(missing)
    payloads = [event.SerializeToString()]
    if _walc is not None:
        assert _walc.keys(payloads) is None  # the compiled reader leaves the verdict to the Python path
    with pytest.raises(InvalidEvent):
        walbatch.keys([event], payloads)
    with pytest.raises(InvalidEvent):
        walbatch.keys_python([event], payloads)


@compiled
def test_unusual_bytes_fall_back_to_the_attributes() -> None:
    event = pb.EventEnvelope(event_id="e1", event_type="T", stream="run-a")
    truncated = event.SerializeToString()[:-1]
    assert _walc.keys([truncated]) is None
    group = b"\x1b\x1c" + event.SerializeToString()  # a (deprecated) group: wire type 3
    assert _walc.keys([group]) is None
    assert walbatch.keys([event], [truncated]) == walbatch.keys_python([event], [truncated])


@compiled
@given(
    streams=st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=40),
    pending=st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 100)),
    known=st.dictionaries(st.sampled_from(["b", "c"]), st.integers(0, 5)),
)
def test_next_versions_agree(streams: list[str], pending: dict[str, int], known: dict[str, int]) -> None:
    arrays = {stream: array("Q", range(count)) for stream, count in known.items()}
    ours, theirs = dict(pending), dict(pending)
    assert _walc.next_versions(streams, ours, arrays) == walbatch.next_versions_python(
        streams, theirs, arrays
    )
    assert ours == theirs


RECORDS = st.lists(
    st.tuples(TEXT, st.integers(1, 2**63), st.integers(0, 2**64 - 1), st.binary(max_size=300)),
    min_size=1,
    max_size=40,
)


@given(first=st.integers(1, 2**40), base=st.integers(0, 2**20), records=RECORDS)
def test_frame_batch_agrees_and_scans_back(
    first: int, base: int, records: list[tuple[str, int, int, bytes]]
) -> None:
    streams = [stream for stream, _, _, _ in records]
    versions = [version for _, version, _, _ in records]
    fps = [fp for _, _, fp, _ in records]
    payloads = [payload for _, _, _, payload in records]
    data, offsets = walbatch.frame_batch_python(first, versions, fps, streams, payloads, base)
    if _walc is not None:
        assert _walc.frame_batch(first, versions, fps, streams, payloads, base) == (data, offsets)
    assert data == b"".join(wal.frames(first, versions, fps, [s.encode() for s in streams], payloads))
    scan = wal.Scan(data, 0, first)
    frames = list(scan)
    assert scan.problem is None and scan.offset == len(data)
    assert list(array("I", offsets)) == [base + frame.offset for frame in frames]
    assert [(f.position, f.stream, f.stream_version, f.fingerprint, f.commit) for f in frames] == [
        (first + i, stream, version, fp, i == len(records) - 1)
        for i, (stream, version, fp, _) in enumerate(records)
    ]


@compiled
def test_frame_batch_refuses_what_the_format_cannot_hold() -> None:
    with pytest.raises(OverflowError):
        _walc.frame_batch(1, [1], [0], ["s" * 70_000], [b""], 0)
    with pytest.raises(OverflowError):
        _walc.frame_batch(1, [1], [0], ["s"], [b"x"], 2**32 - 10)
    with pytest.raises(ValueError):
        _walc.frame_batch(1, [1, 2], [0], ["s"], [b"x"], 0)


@compiled
@given(
    first=st.integers(1, 2**40),
    base=st.integers(0, 2**20),
    records=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 2**64 - 1), st.binary(max_size=50)),
        min_size=1,
        max_size=40,
    ),
    pending=st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 100)),
    known=st.dictionaries(st.sampled_from(["b", "c"]), st.integers(0, 5)),
)
def test_frame_new_is_next_versions_then_frame_batch(
    first: int,
    base: int,
    records: list[tuple[str, int, bytes]],
    pending: dict[str, int],
    known: dict[str, int],
) -> None:
    arrays = {stream: array("Q", range(count)) for stream, count in known.items()}
    streams, fps, payloads = ([record[k] for record in records] for k in range(3))
    ours, theirs = dict(pending), dict(pending)
    framed = _walc.frame_new(first, streams, fps, payloads, ours, arrays, base)
    versions = walbatch.next_versions_python(streams, theirs, arrays)
    assert framed == walbatch.frame_batch_python(first, versions, fps, streams, payloads, base)
    assert ours == theirs
    assert (
        walbatch.rebase(framed[1], base)
        == walbatch.frame_batch_python(first, versions, fps, streams, payloads, 0)[1]
    )
    # record=False (a group's last request): the same records, read from pending without advancing it
    for frame_new in (_walc.frame_new, walbatch.frame_new_python):
        unchanged = dict(pending)
        assert frame_new(first, streams, fps, payloads, unchanged, arrays, base, False) == framed
        assert unchanged == pending


@compiled
@given(streams=st.lists(st.sampled_from(["a", "b", "c"]), max_size=30), first=st.integers(1, 2**40))
def test_index_streams_agree(streams: list[str], first: int) -> None:
    ours: dict[str, array] = {"a": array("Q", [7])}
    theirs: dict[str, array] = {"a": array("Q", [7])}
    walbatch.index_streams(ours, streams, first)
    walbatch.index_streams_python(theirs, streams, first)
    assert ours == theirs and all(positions.typecode == "Q" for positions in ours.values())


def _framed(events: list[pb.EventEnvelope], first: int) -> tuple[bytes, bytes]:
    payloads = [event.SerializeToString() for event in events]
    streams, fps = walbatch.keys_python(events, payloads)
    versions = list(range(1, len(events) + 1))
    return walbatch.frame_batch_python(first, versions, fps, streams, payloads, 0)


@given(events=ENVELOPES, first=st.integers(1, 2**40))
def test_stamped_bodies_decode_to_the_envelopes_with_version_and_position(
    events: list[pb.EventEnvelope], first: int
) -> None:
    data, offsets = _framed(events, first)
    bodies = walbatch.stamped_bodies_python(data, offsets, first)
    if _walc is not None:
        assert _walc.stamped_bodies(data, offsets, first) == bodies
    for index, (event, body) in enumerate(zip(events, bodies, strict=True)):
        expected = pb.EventEnvelope()
        expected.CopyFrom(event)
        expected.stream_version, expected.global_position = index + 1, first + index
        assert pb.EventEnvelope.FromString(body) == expected


@compiled
@pytest.mark.parametrize(
    "damage",
    ["magic", "position", "length", "offset_past", "offset_between", "stream_len"],
)
def test_stamped_bodies_name_the_same_damage(damage: str) -> None:
    events = [pb.EventEnvelope(event_id=f"e{i}", event_type="T", stream="run-a") for i in range(5)]
    data, offsets_bytes = _framed(events, 10)
    buffer, offsets = bytearray(data), array("I", offsets_bytes)
    third = offsets[2]
    if damage == "magic":
        buffer[third] ^= 0xFF
    elif damage == "position":
        buffer[third + 12] ^= 1
    elif damage == "length":
        buffer[third + 4] ^= 1
    elif damage == "offset_past":
        offsets[3] = len(buffer) + 5
    elif damage == "offset_between":
        offsets[2] += 1
    else:
        buffer[third + 36 : third + 38] = (60_000).to_bytes(2, "little")
    outcomes = []
    for stamped in (walbatch.stamped_bodies_python, walbatch.stamped_bodies_compiled):
        with pytest.raises(walbatch.BadIndex) as caught:
            stamped(bytes(buffer), offsets.tobytes(), 10)
        outcomes.append(caught.value.args)
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0].startswith("the index")


@compiled
@given(data=st.binary(max_size=2000), seed=st.integers(0, 2**32 - 1))
def test_crc32c_in_hardware_and_by_table_is_the_crc32c_package(data: bytes, seed: int) -> None:
    assert _walc.crc32c(data, seed) == _walc.crc32c_table(data, seed) == crc32c.crc32c(data, seed)


@compiled
@pytest.mark.parametrize("size", [383, 384, 385, 391, 392, 400, 767, 768, 769, 1151, 1152, 1160, 4099])
def test_crc32c_in_three_lanes_at_the_lanes_edges(size: int) -> None:
    """The hardware CRC runs three 128-byte lanes at once from 384 bytes on, then the rest one lane."""
    data = bytes((index * 131 + size) % 251 for index in range(size))
    for seed in (0, 0xFFFFFFFF, 0x1234ABCD):
        assert _walc.crc32c(data, seed) == _walc.crc32c_table(data, seed) == crc32c.crc32c(data, seed)
        assert _walc.crc32c(data[100:], _walc.crc32c(data[:100], seed)) == crc32c.crc32c(data, seed)


@compiled
def test_a_store_writes_the_same_bytes_and_reads_the_same_events_either_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Appends (with duplicates and a segment roll) and a bulk replay, compiled and then pure Python."""
    from eventstore.file import FileStore
    from eventstore.file import reads as file_reads

    events = [
        pb.EventEnvelope(event_id=f"e{i}", event_type="T", stream=f"run-{i % 7}", payload=bytes(i % 50))
        for i in range(12_000)
    ]
    logs: list[tuple[dict[str, bytes], list[pb.EventEnvelope]]] = []
    for python in (False, True):
        if python:
            for name in (
                "keys",
                "next_versions",
                "frame_batch",
                "frame_new",
                "index_streams",
                "stamped_bodies",
            ):
                monkeypatch.setattr(walbatch, name, getattr(walbatch, f"{name}_python"))
        path = tmp_path / ("python" if python else "compiled")
        with FileStore(path, segment_size=1 << 20) as store:
            for start in range(0, len(events), 1000):
                store.append(events[start : start + 1000])
            assert store.append(events[500:1500]) == list(range(501, 1501))  # all duplicates
            read = list(store.read_all())
        assert len(read) == len(events) and len(list(path.glob("*.wal"))) > 1
        assert file_reads.BULK_MIN < 12_000  # the bulk path ran
        logs.append(({p.name: p.read_bytes() for p in sorted(path.glob("*.wal"))}, read))
    assert logs[0][0] == logs[1][0]
    assert logs[0][1] == logs[1][1]
    assert [e.global_position for e in logs[0][1]] == list(range(1, len(events) + 1))


FP = st.integers(0, 2**64 - 1) | st.sampled_from([0, 1, 2**64 - 1, 5])  # small pool: colliding keys


@compiled
@given(fps=st.lists(FP, max_size=60))
def test_distinct_agrees(fps: list[int]) -> None:
    assert _walc.distinct(fps) == walbatch.distinct_python(fps) == (len(set(fps)) == len(fps))
    assert _walc.distinct(array("Q", fps)) == _walc.distinct(fps)


@compiled
@pytest.mark.parametrize("bad", [array("I", [1, 2]), array("d", [1.0]), b"\0" * 16, (1, 2)])
def test_fingerprints_are_a_list_or_an_array_of_uint64(bad: object) -> None:
    with pytest.raises(TypeError):
        _walc.distinct(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _walc.FpTable().find(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _walc.frame_new(1, ["s", "s"], bad, [b"", b""], {}, {}, 0)  # type: ignore[arg-type]


@compiled
def test_fingerprints_convert_at_the_edges_of_64_bits() -> None:
    """Ints are read digit by digit where they fit 64 bits (3.11), and refused where they do not."""
    edges = [0, 1, 2**30 - 1, 2**30, 2**60 - 1, 2**60, 2**63, 2**64 - 2, 2**64 - 1]
    table = _walc.FpTable()
    table.add_run(edges, 1)
    assert sorted(array("Q", table.items()[0])) == edges
    assert table.find(edges) == {index: [index + 1] for index in range(len(edges))}
    for bad in (2**64, 2**90, -1):
        with pytest.raises(OverflowError):
            _walc.distinct([bad])
    with pytest.raises(TypeError):
        _walc.distinct([1.0])


@compiled
@given(
    batches=st.lists(st.lists(FP, max_size=40), max_size=30),
    query=st.lists(FP, max_size=40),
    runs=st.lists(st.booleans(), max_size=30),
)
def test_fp_tables_agree(batches: list[list[int]], query: list[int], runs: list[bool]) -> None:
    tables = (_walc.FpTable(), walbatch.FpTablePython())
    position = 1
    for number, listed in enumerate(batches):
        fps = array("Q", listed) if number % 2 else listed  # keys' arrays and lists alike
        for table in tables:
            if number < len(runs) and runs[number]:
                table.add_run(fps, position)
            else:
                table.add_many(fps, array("Q", range(position, position + len(fps))))
        position += len(fps)
    compiled_table, python_table = tables
    assert len(compiled_table) == len(python_table) == position - 1
    assert compiled_table.find(query) == python_table.find(query)
    assert compiled_table.find(query + [fp for fps in batches for fp in fps]) == python_table.find(
        query + [fp for fps in batches for fp in fps]
    )
    items = [table.items() for table in tables]
    pairs = [sorted(zip(array("Q", keys), array("Q", values), strict=True)) for keys, values in items]
    assert pairs[0] == pairs[1]
    for table in tables:
        table.clear()
        assert len(table) == 0 and table.find(query) == {}
