"""Redis outages against a private redis-server: killed and restarted empty, or down from the start."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
import redis
from redis.client import Pipeline

from domains.oona.bus import Delivery, OonaConsumer
from domains.oona.fanout import OonaFanout
from domains.oona.routing import DRAIN_ORDER, OonaKeys
from eventstore import EventStore
from eventstore.mirror import MirrorCursor, MirrorThread, connect_redis, marker_key, position_of
from tests.mirror.redis_support import PrivateRedis, wait_until
from tests.mirror.test_mirror import assert_redis_equals_log, mixed_events

pytestmark = pytest.mark.redis

PREFIX = "esper"


def test_redis_killed_and_restarted_empty_is_reseeded_and_consumers_resume(
    store: EventStore, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    keys = OonaKeys(PREFIX)
    handled: Counter[str] = Counter()
    lock = threading.Lock()

    def handler(delivery: Delivery, tx: Pipeline) -> None:
        with lock:
            handled[delivery.envelope.event_id] += 1

    consumer_client = connect_redis(private_redis.url)
    consumer = OonaConsumer(consumer_client, "workers", handler, keys=keys, claim_idle_ms=200)
    consumer.ensure_groups()
    stop = threading.Event()
    worker = threading.Thread(target=consumer.run, args=(stop,), kwargs={"block_ms": 50, "regroup_after": 30})
    mirror = MirrorThread(
        store,
        private_redis.url,
        tmp_path,
        prefix=PREFIX,
        fanout=OonaFanout(keys),
        idle_timeout=0.05,
        housekeeping_interval=0.01,
        persist_interval=0.05,
    )
    mirror.start()
    worker.start()
    try:
        store.append(mixed_events(150))
        wait_until(lambda: mirror.position == 150 and len(handled) == 150)
        # the durable cursor records where the group got to on every queue it reads
        cursor_path = mirror.mirror.cursor_path

        def durable_groups_caught_up() -> bool:
            groups = MirrorCursor.load(cursor_path).groups
            return all(
                groups.get(keys.queue(queue), {}).get("workers", -1)
                == _last_position(consumer_client, keys.queue(queue))
                for queue in DRAIN_ORDER
            )

        wait_until(durable_groups_caught_up)
        before_kill = dict(handled)

        private_redis.kill()
        store.append(mixed_events(60))  # appends never wait on Redis
        private_redis.start()  # empty: no streams, no groups, no marker
        store.append(mixed_events(40))

        wait_until(lambda: mirror.position == store.head_position() == 250 and len(handled) == 250)
        assert mirror.mirror.reseeds >= 1
        assert mirror.error is None
        # groups were recreated at their durable cursor, never at $ (nothing skipped) nor at 0 (nothing
        # handled before the outage came back)
        assert all(handled[event_id] == 1 for event_id in before_kill)
        assert set(handled) == {e.event_id for e in store.read_all()}
        with connect_redis(private_redis.url) as check:
            assert_redis_equals_log(check, store, PREFIX)
    finally:
        stop.set()
        worker.join(10)
        mirror.stop()
        consumer_client.close()


def _last_position(client: redis.Redis, key: str) -> int:
    """The position of a stream's last entry ever added (0 if it never had one)."""
    try:
        info = client.xinfo_stream(key)
    except redis.exceptions.ResponseError:
        return 0
    return position_of(info["last-generated-id"])


def test_mirror_thread_waits_out_a_redis_that_is_down_then_catches_up(
    store: EventStore, tmp_path: Path
) -> None:
    server = PrivateRedis(tmp_path)  # not started yet: the mirror starts against a dead port
    mirror = MirrorThread(store, server.url, tmp_path, prefix=PREFIX, idle_timeout=0.05).start()
    try:
        store.append(mixed_events(50))
        store.append(mixed_events(50))
        assert mirror.is_alive() and mirror.position == 0
        server.start()
        wait_until(lambda: mirror.position == 100)
        with connect_redis(server.url) as check:
            assert_redis_equals_log(check, store, PREFIX)
    finally:
        mirror.stop()
        server.kill()


def test_redis_going_back_to_an_older_state_under_a_running_mirror_is_refilled(
    store: EventStore, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    mirror = MirrorThread(store, private_redis.url, tmp_path, prefix=PREFIX, idle_timeout=0.05).start()
    check = connect_redis(private_redis.url)
    try:
        store.append(mixed_events(80))
        wait_until(lambda: mirror.position == 80)
        # as if restored from an older snapshot: the marker and the streams only reach position 30
        for key in list(check.scan_iter(match=f"{PREFIX}:cat:*")):
            kept = check.xrange(key, max="30-0")
            check.delete(key)
            for eid, fields in kept:
                check.xadd(key, fields, id=eid)
        check.hset(marker_key(PREFIX), "position", 30)
        store.append(mixed_events(20))
        wait_until(lambda: mirror.position == 100)
        assert mirror.mirror.reseeds == 1 and mirror.error is None
        assert_redis_equals_log(check, store, PREFIX)
    finally:
        mirror.stop()
        check.close()


def test_the_mirror_reports_an_outage_once_and_its_end_once_caught_up(
    store: EventStore, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    from eventstore.mirror_metrics import MIRROR_DOWN

    reports: list[tuple[bool, int]] = []
    heads: list[int] = []

    def on_health(healthy: bool, lag: int, detail: str) -> None:
        reports.append((healthy, lag))
        heads.append(store.head_position())

    mirror = MirrorThread(
        store, private_redis.url, tmp_path, prefix=PREFIX, idle_timeout=0.05, on_health=on_health
    ).start()
    try:
        store.append(mixed_events(30))
        wait_until(lambda: mirror.position == 30)
        assert reports == [] and MIRROR_DOWN._value.get() == 0
        private_redis.kill()
        wait_until(lambda: len(reports) == 1)
        assert reports[0][0] is False and MIRROR_DOWN._value.get() == 1
        store.append(mixed_events(40))  # written while Redis is down
        private_redis.start()  # empty
        wait_until(lambda: len(reports) == 2)
        # healthy only once Redis holds every event the log had when it came back
        assert reports[1][0] is True and mirror.position >= 70
        assert MIRROR_DOWN._value.get() == 0
        with connect_redis(private_redis.url) as check:
            assert_redis_equals_log(check, store, PREFIX)
        assert len(reports) == 2
    finally:
        mirror.stop()
