"""The mirror never reports success with a gap: an entry another producer put on a mirror stream is
refused, never counted as already mirrored, and what the mirror reports is what Redis committed, even
when the reply to a committed batch was lost."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import redis

from domains.oona.fanout import OonaFanout
from domains.oona.routing import OonaKeys, Queue
from eventstore import EventStore
from eventstore.mirror import ForeignEntry, Mirror, category_key, connect_redis, marker_key
from leyline import category_of
from tests.mirror.redis_support import PrivateRedis, ScriptReplyProxy, emergency_event
from tests.mirror.test_mirror import assert_redis_equals_log, mixed_events

pytestmark = pytest.mark.redis


def foreign_key(prefix: str, where: str) -> str:
    return (
        category_key(prefix, category_of(emergency_event().stream))
        if where == "category"
        else (OonaKeys(prefix).queue(Queue.EMERGENCY))
    )


@pytest.mark.parametrize("where", ["category", "bus-queue"])
@pytest.mark.parametrize("when", ["before-the-first-mirror", "after-mirroring"])
def test_an_entry_another_producer_added_is_refused_not_counted(
    store: EventStore, shared_redis: redis.Redis, prefix: str, tmp_path: Path, where: str, when: str
) -> None:
    mirror = Mirror(store, shared_redis, tmp_path, prefix=prefix, fanout=OonaFanout(OonaKeys(prefix)))
    key = foreign_key(prefix, where)
    store.append([*mixed_events(20), emergency_event()])
    if when == "after-mirroring":
        assert mirror.catch_up() == 21
        store.append([*mixed_events(10), emergency_event()])
    held = mirror.position
    foreign = shared_redis.xadd(key, {"from": "someone else"})  # a '*' id: milliseconds, far above
    with pytest.raises(ForeignEntry) as raised:
        mirror.catch_up()
    assert raised.value.key == key and raised.value.found == foreign.decode()
    assert key in str(raised.value) and "another producer" in str(raised.value)
    assert int(shared_redis.hget(marker_key(prefix), "position") or 0) == held, "nothing counted as mirrored"
    shared_redis.delete(key)  # what the error says to do; then the mirror refills what Redis lacks
    shared_redis.hset(marker_key(prefix), "position", 0)
    mirror.catch_up()
    assert mirror.position == store.head_position()
    assert_redis_equals_log(shared_redis, store, prefix)


def test_a_lost_reply_never_makes_the_mirror_report_less_than_redis_holds(
    store: EventStore, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    """A batch commits in Redis but its reply is lost; the client's retry is answered 'moved' and the
    mirror no longer knows what Redis holds. Stopped right then (Ctrl-C in `esper mirror --follow`), it
    reports what Redis committed, not the position before that batch."""
    stop = threading.Event()
    proxy = ScriptReplyProxy(private_redis.port, on_reply=stop.set, lose=True)
    client = connect_redis(proxy.url)
    admin = redis.Redis.from_url(private_redis.url)
    try:
        store.append(mixed_events(50))
        mirror = Mirror(store, client, tmp_path, prefix="esper")
        assert mirror.catch_up() == 50
        proxy.arm()
        store.append(mixed_events(30))
        mirror.follow(stop, idle_timeout=0.05)  # returns once stop is set: when the reply was lost
        assert int(admin.hget(marker_key("esper"), "position") or 0) == 80
        assert mirror.position == 80
        assert_redis_equals_log(admin, store, "esper")
    finally:
        proxy.close()
        client.close()
        admin.close()
