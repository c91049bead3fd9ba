"""The store contract (eventstore.api), run against every backend."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from eventstore import (
    ANY,
    EXISTS,
    NO_STREAM,
    EventFilter,
    EventStore,
    InvalidEvent,
    Snapshot,
    WrongExpectedVersion,
    exact,
)
from leyline import decode_payload, pb

Event = Callable[..., pb.EventEnvelope]


def test_empty_store(store: EventStore) -> None:
    assert store.head_position() == 0
    assert store.stream_version("run-x") == 0
    assert store.read_stream("run-x") == []
    assert list(store.read_all()) == []


def test_append_assigns_gap_free_positions_and_stream_versions(store: EventStore, event: Event) -> None:
    assert store.append([event("run-a"), event("run-b"), event("run-a")]) == [1, 2, 3]
    assert store.append([event("run-b")]) == [4]
    read = list(store.read_all())
    assert [(e.global_position, e.stream, e.stream_version) for e in read] == [
        (1, "run-a", 1),
        (2, "run-b", 1),
        (3, "run-a", 2),
        (4, "run-b", 2),
    ]
    assert store.head_position() == 4
    assert store.stream_version("run-a") == 2
    assert decode_payload(read[0]) == pb.RunStarted(run_id="run-a")


def test_an_empty_append_writes_nothing(store: EventStore, event: Event) -> None:
    assert store.append([]) == []
    assert store.append([event("run-a")]) == [1]
    assert store.append([]) == []
    assert store.head_position() == 1


def test_read_round_trips_every_field(store: EventStore, event: Event) -> None:
    original = event("seed-r1.2", note="x")
    original.correlation_id = "corr"
    original.causation_id = "cause"
    original.epoch = 7
    original.key_id = "k1"
    original.nonce = b"\x00\x01"
    original.hmac = b"\xff" * 32
    store.append([original])
    (stored,) = store.read_stream("seed-r1.2")
    expected = pb.EventEnvelope()
    expected.CopyFrom(original)
    expected.stream_version = 1
    expected.global_position = 1
    assert stored == expected


@pytest.mark.parametrize(
    ("expectation", "actual", "ok"),
    [
        (ANY, 0, True),
        (ANY, 2, True),
        (NO_STREAM, 0, True),
        (NO_STREAM, 1, False),
        (EXISTS, 0, False),
        (EXISTS, 1, True),
        (exact(0), 0, True),
        (exact(2), 2, True),
        (exact(1), 2, False),
        (exact(3), 2, False),
    ],
)
def test_expected_versions(store: EventStore, event: Event, expectation, actual: int, ok: bool) -> None:  # type: ignore[no-untyped-def]
    for _ in range(actual):
        store.append([event("run-a")])
    if ok:
        store.append([event("run-a")], {"run-a": expectation})
        assert store.stream_version("run-a") == actual + 1
    else:
        with pytest.raises(WrongExpectedVersion) as raised:
            store.append([event("run-a")], {"run-a": expectation})
        assert raised.value.actual == actual
        assert raised.value.stream == "run-a"
        assert store.stream_version("run-a") == actual


def test_conflict_on_one_stream_writes_nothing(store: EventStore, event: Event) -> None:
    store.append([event("run-b")])
    with pytest.raises(WrongExpectedVersion):
        store.append([event("run-a"), event("run-b")], {"run-a": NO_STREAM, "run-b": NO_STREAM})
    assert store.head_position() == 1
    assert store.stream_version("run-a") == 0


def test_idempotent_append_returns_original_positions(store: EventStore, event: Event) -> None:
    first, second = event("run-a"), event("run-b")
    assert store.append([first, second]) == [1, 2]
    assert store.append([first, second]) == [1, 2]
    # a retry with the same expectation succeeds: it is the same append
    assert store.append([first], {"run-a": NO_STREAM}) == [1]
    third = event("run-a")
    assert store.append([first, third]) == [1, 3]
    assert store.append([third, third]) == [3, 3]
    fresh = event("run-c")
    assert store.append([fresh, fresh]) == [4, 4]
    assert store.head_position() == 4


def test_idempotency_survives_reopen(store_factory: Callable[..., EventStore], event: Event) -> None:
    store = store_factory()
    events = [event("run-a") for _ in range(5)]
    store.append(events)
    store.close()
    reopened = store_factory()
    assert reopened.append(events[2:4]) == [3, 4]
    assert reopened.head_position() == 5
    assert reopened.append([event("run-a")]) == [6]


def test_invalid_events_are_refused(store: EventStore, event: Event) -> None:
    nameless = event("run-a")
    nameless.event_id = ""
    with pytest.raises(InvalidEvent):
        store.append([nameless])
    streamless = event("run-a")
    streamless.stream = ""
    with pytest.raises(InvalidEvent):
        store.append([streamless])
    assert store.head_position() == 0


def test_read_stream_from_version_and_limit(store: EventStore, event: Event) -> None:
    for index in range(6):
        store.append([event("run-a", note=str(index)), event("run-b")])
    page = store.read_stream("run-a", from_version=3, limit=2)
    assert [e.stream_version for e in page] == [3, 4]
    assert [decode_payload(e).run_id for e in page] == ["2", "3"]  # type: ignore[attr-defined]
    assert [e.stream_version for e in store.read_stream("run-a", from_version=5)] == [5, 6]
    assert store.read_stream("run-a", from_version=9) == []


def test_read_all_filters_and_ranges(store: EventStore, event: Event) -> None:
    store.append([event("run-a"), event("seed-r.1"), event("run-b"), event("seed-r.2")])
    store.append([pb.EventEnvelope(event_id="x1", event_type="AlertFired", stream="alert-hot", payload=b"")])
    positions = lambda f, **kw: [e.global_position for e in store.read_all(event_filter=f, **kw)]  # noqa: E731
    assert positions(EventFilter()) == [1, 2, 3, 4, 5]
    assert positions(EventFilter(categories=frozenset({"seed"}))) == [2, 4]
    assert positions(EventFilter(streams=frozenset({"run-b", "seed-r.1"}))) == [2, 3]
    assert positions(EventFilter(event_types=frozenset({"AlertFired"}))) == [5]
    assert positions(EventFilter(categories=frozenset({"run"})), from_position=2) == [3]
    assert [e.global_position for e in store.read_all(from_position=2, to_position=4)] == [2, 3, 4]
    assert [e.global_position for e in store.read_all(from_position=2, limit=2)] == [2, 3]
    assert list(store.read_all(from_position=6)) == []


def test_subscription_catches_up_then_goes_live(store: EventStore, event: Event) -> None:
    store.append([event("run-a"), event("seed-r.1")])
    subscription = store.subscribe(from_position=1, timeout=5.0)
    assert [e.global_position for e in subscription.poll(timeout=0)] == [1, 2]
    assert subscription.poll(timeout=0.05) == []
    appender = threading.Timer(0.1, lambda: store.append([event("run-a")]))
    appender.start()
    live = subscription.poll(timeout=10)
    appender.join()
    assert [e.global_position for e in live] == [3]
    subscription.close()


def test_subscription_filter_and_iteration_end_on_timeout(store: EventStore, event: Event) -> None:
    store.append([event("run-a"), event("seed-r.1"), event("seed-r.2"), event("run-b")])
    subscription = store.subscribe(
        from_position=2, event_filter=EventFilter(categories=frozenset({"run"})), timeout=0.2
    )
    assert [e.global_position for e in subscription] == [4]
    store.append([event("seed-r.3"), event("run-c")])
    assert [e.global_position for e in subscription.poll(timeout=0, max_events=10)] == [6]


def test_subscription_max_events(store: EventStore, event: Event) -> None:
    store.append([event("run-a") for _ in range(7)])
    subscription = store.subscribe(timeout=0)
    assert [len(subscription.poll(max_events=3)) for _ in range(4)] == [3, 3, 1, 0]


def test_snapshots(store: EventStore, event: Event) -> None:
    store.append([event("run-a"), event("run-a")])
    assert store.load_snapshot("run-a", schema_version=1) is None
    snapshot = Snapshot("run-a", version=2, schema_version=3, data=b"state")
    store.save_snapshot(snapshot)
    assert store.load_snapshot("run-a", schema_version=3) == snapshot
    # an outdated schema is ignored (and dropped)
    assert store.load_snapshot("run-a", schema_version=4) is None
    assert store.load_snapshot("run-a", schema_version=3) is None
    # a snapshot ahead of the log (e.g. the log was restored) is not trusted
    store.save_snapshot(Snapshot("run-a", version=9, schema_version=3, data=b"future"))
    assert store.load_snapshot("run-a", schema_version=3) is None
    store.save_snapshot(Snapshot("run-a", version=1, schema_version=3, data=b"old"))
    store.save_snapshot(Snapshot("run-a", version=2, schema_version=3, data=b"new"))
    loaded = store.load_snapshot("run-a", schema_version=3)
    assert loaded is not None and loaded.data == b"new"


def test_many_streams_and_events(store: EventStore, event: Event) -> None:
    expected_versions: dict[str, int] = {}
    for batch in range(20):
        events = [event(f"seed-r.{(batch * 7 + i) % 11}") for i in range(25)]
        store.append(events)
        for e in events:
            expected_versions[e.stream] = expected_versions.get(e.stream, 0) + 1
    assert store.head_position() == 500
    for stream, version in expected_versions.items():
        assert store.stream_version(stream) == version
        assert [e.stream_version for e in store.read_stream(stream)] == list(range(1, version + 1))
    assert [e.global_position for e in store.read_all()] == list(range(1, 501))
