"""The mirror against the real Redis: content equals the log, idempotent re-mirroring, trimming, cursors."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from domains.oona.fanout import OonaFanout
from domains.oona.routing import OonaKeys, Queue
from eventstore import EventStore, EventStoreError, open_store
from eventstore.mirror import (
    Mirror,
    MirrorConflict,
    MirrorCursor,
    category_key,
    cursor_path,
    entry_id,
    marker_key,
    position_of,
    redacted,
)
from leyline import category_of, decode_envelope
from tests.mirror.redis_support import (
    SHARED_REDIS,
    emergency_event,
    epoch_event,
    field_report_event,
    policy_event,
    telemetry_event,
)

pytestmark = pytest.mark.redis


def mixed_events(count: int) -> list:
    makers = [epoch_event, telemetry_event, policy_event, field_report_event, emergency_event]
    return [makers[i % len(makers)]() if i % 7 else epoch_event(run=f"r{i}") for i in range(count)]


def assert_redis_equals_log(client: redis.Redis, store: EventStore, prefix: str) -> None:
    """Every category stream holds exactly the log's events of that category, in order, by position."""
    expected: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
    for envelope in store.read_all():
        expected[category_of(envelope.stream)].append(
            (envelope.global_position, envelope.SerializeToString())
        )
    categories = {key.decode().rsplit(":", 1)[1] for key in client.scan_iter(match=f"{prefix}:cat:*")}
    assert categories == set(expected)
    for category, events in expected.items():
        entries = client.xrange(category_key(prefix, category))
        assert [position_of(eid) for eid, _ in entries] == [position for position, _ in events]
        for (_, fields), (_, data) in zip(entries, events, strict=True):
            assert decode_envelope(fields[b"envelope"]).SerializeToString() == data


def test_catch_up_mirrors_every_event_by_position(
    store: EventStore, shared_redis: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    store.append(mixed_events(240))
    mirror = Mirror(store, shared_redis, tmp_path, prefix=prefix, fanout=OonaFanout(OonaKeys(prefix)))
    assert mirror.catch_up() == 240
    assert_redis_equals_log(shared_redis, store, prefix)
    assert shared_redis.hgetall(marker_key(prefix)) == {
        b"log_id": next(iter(store.read_all(limit=1))).event_id.encode(),
        b"position": b"240",
    }
    keys = OonaKeys(prefix)
    assert shared_redis.xlen(keys.queue(Queue.EMERGENCY)) == sum(
        1 for e in store.read_all() if e.event_type == "AlertFired"
    )
    cursor = json.loads(mirror.cursor_path.read_text())
    assert cursor["position"] == 240 and cursor["prefix"] == prefix


def test_remirroring_is_idempotent(
    store: EventStore, shared_redis: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    store.append(mixed_events(120))
    first = Mirror(store, shared_redis, tmp_path, prefix=prefix, fanout=OonaFanout(OonaKeys(prefix)))
    first.catch_up()
    before = REGISTRY.get_sample_value("esper_eventstore_mirror_rejected_entries_total") or 0.0
    # Pretend Redis came back from an old snapshot holding position 40: everything after is re-added.
    shared_redis.hset(marker_key(prefix), "position", 40)
    again = Mirror(store, shared_redis, tmp_path, prefix=prefix, fanout=OonaFanout(OonaKeys(prefix)))
    assert again.catch_up() == 80
    assert again.reseeds == 1
    # category entry + one Oona queue entry for each of the 80 events: all already there, all rejected
    rejected = (REGISTRY.get_sample_value("esper_eventstore_mirror_rejected_entries_total") or 0.0) - before
    assert rejected == 160
    assert_redis_equals_log(shared_redis, store, prefix)


def test_mirror_follows_new_appends_from_its_position(
    store: EventStore, shared_redis: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    store.append(mixed_events(30))
    Mirror(store, shared_redis, tmp_path, prefix=prefix).catch_up()
    store.append(mixed_events(25))
    later = Mirror(store, shared_redis, tmp_path, prefix=prefix)
    assert later.catch_up() == 25
    assert later.position == 55
    assert_redis_equals_log(shared_redis, store, prefix)


def test_redis_holding_another_log_is_refused(
    store: EventStore, shared_redis: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    store.append(mixed_events(5))
    shared_redis.hset(marker_key(prefix), mapping={"log_id": "someone-else", "position": 3})
    with pytest.raises(MirrorConflict, match="another log"):
        Mirror(store, shared_redis, tmp_path, prefix=prefix).catch_up()


def test_cursor_of_another_log_is_ignored(
    store: EventStore, shared_redis: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    store.append(mixed_events(10))
    mirror = Mirror(store, shared_redis, tmp_path, prefix=prefix)
    MirrorCursor("old-log", 500, {"x": {"g": 400}}).save(mirror.cursor_path, {})
    mirror = Mirror(store, shared_redis, tmp_path, prefix=prefix)
    assert mirror.catch_up() == 10
    assert mirror.reseeds == 0
    assert not shared_redis.exists(f"{prefix}:x")


def test_empty_log_writes_nothing(
    store: EventStore, shared_redis: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    assert Mirror(store, shared_redis, tmp_path, prefix=prefix).catch_up() == 0
    assert list(shared_redis.scan_iter(match=f"{prefix}:*")) == []


def test_trimming_keeps_what_the_slowest_group_has_not_passed(
    store: EventStore, shared_redis: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    store.append([epoch_event(epoch=i) for i in range(100)])
    key = category_key(prefix, "run")
    mirror = Mirror(store, shared_redis, tmp_path, prefix=prefix)
    mirror.catch_up()
    shared_redis.xgroup_create(key, "fast", id="0-0")
    shared_redis.xgroup_create(key, "slow", id="0-0")
    fast = shared_redis.xreadgroup("fast", "c", {key: ">"}, count=80)[0][1]
    shared_redis.xack(key, "fast", *[eid for eid, _ in fast])
    slow = shared_redis.xreadgroup("slow", "c", {key: ">"}, count=50)[0][1]
    shared_redis.xack(key, "slow", *[eid for eid, _ in slow[:30]])  # 31..50 stay pending
    mirror.housekeeping(force=True)
    remaining = [position_of(eid) for eid, _ in shared_redis.xrange(key)]
    assert remaining == list(range(31, 101))
    assert mirror.cursor.groups[key] == {"fast": 80, "slow": 30}
    durable = MirrorCursor.load(mirror.cursor_path)
    assert durable.groups[key] == {"fast": 80, "slow": 30}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    plan=st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 40)),  # per group: entries read, of which acked
        min_size=1,
        max_size=3,
    ),
    appended=st.integers(1, 60),
)
def test_trimming_never_removes_an_entry_a_group_has_not_passed(
    tmp_path_factory: pytest.TempPathFactory,
    shared_redis: redis.Redis,
    prefix: str,
    plan: list[tuple[int, int]],
    appended: int,
) -> None:
    directory = tmp_path_factory.mktemp("trim")
    with open_store(directory / "log") as log:
        log.append([epoch_event(epoch=i) for i in range(appended)])
        key = category_key(prefix, "run")
        shared_redis.delete(key, marker_key(prefix))
        mirror = Mirror(log, shared_redis, directory, prefix=prefix)
        mirror.catch_up()
        unpassed: set[int] = set()
        for index, (read, acked) in enumerate(plan):
            group = f"g{index}"
            shared_redis.xgroup_create(key, group, id="0-0")
            reply = shared_redis.xreadgroup(group, "c", {key: ">"}, count=read) if read else []
            delivered = [eid for eid, _ in reply[0][1]] if reply else []
            if delivered[:acked]:
                shared_redis.xack(key, group, *delivered[:acked])
            unpassed |= {position_of(eid) for eid in delivered[acked:]}
            last = position_of(delivered[-1]) if delivered else 0
            unpassed |= set(range(last + 1, appended + 1))
        mirror.housekeeping(force=True)
        remaining = {position_of(eid) for eid, _ in shared_redis.xrange(key)}
        assert unpassed <= remaining
        assert remaining == set(range(min(unpassed, default=appended + 1), appended + 1))


def test_entry_ids_derive_from_positions() -> None:
    assert entry_id(1) == "1-0"
    assert position_of(b"12345-0") == 12345
    assert position_of(entry_id(987654321)) == 987654321


def test_urls_are_redacted_and_each_server_has_its_own_cursor(tmp_path: Path) -> None:
    assert redacted("redis://user:secret@cache:6380/2") == "redis://user:***@cache:6380/2"
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    first = cursor_path(tmp_path, "redis://a:6379/0", "esper")
    assert first != cursor_path(tmp_path, "redis://b:6379/0", "esper")
    assert first != cursor_path(tmp_path, "redis://a:6379/0", "other")
    assert first.parent == tmp_path / "mirror"


def test_an_unreadable_cursor_is_a_clear_error(
    store: EventStore, shared_redis: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    path = cursor_path(tmp_path, SHARED_REDIS, prefix)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(EventStoreError, match="delete it to reseed"):
        Mirror(store, shared_redis, tmp_path, redis_url=SHARED_REDIS, prefix=prefix)


def test_a_stream_evicted_or_deleted_from_redis_is_refilled(
    store: EventStore, shared_redis: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    store.append(mixed_events(60))
    mirror = Mirror(store, shared_redis, tmp_path, prefix=prefix, fanout=OonaFanout(OonaKeys(prefix)))
    mirror.catch_up()
    shared_redis.delete(category_key(prefix, "telemetry"))
    mirror.housekeeping(force=True)
    store.append(mixed_events(5))
    mirror.catch_up()
    assert mirror.reseeds == 1
    assert_redis_equals_log(shared_redis, store, prefix)
