"""Oona consumers and backpressure against the real Redis (shared server, unique prefix)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import redis
from prometheus_client import REGISTRY
from redis.client import Pipeline

from domains.oona.bus import Delivery, OonaConsumer
from domains.oona.fanout import OonaFanout
from domains.oona.routing import OonaKeys, Queue, Thresholds
from eventstore import EventStore
from eventstore.mirror import Mirror, position_of
from tests.mirror.redis_support import (
    delete_prefix,
    emergency_event,
    epoch_event,
    field_report_event,
    policy_event,
    telemetry_event,
    wait_until,
)
from tests.mirror.test_mirror import assert_redis_equals_log

pytestmark = pytest.mark.redis


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def mirror_into(
    store: EventStore, client: redis.Redis, prefix: str, data_dir: Path, **options: object
) -> Mirror:
    mirror = Mirror(
        store,
        client,
        data_dir,
        prefix=prefix,
        fanout=OonaFanout(OonaKeys(prefix)),
        housekeeping_interval=0.0,
        **options,  # type: ignore[arg-type]
    )
    mirror.catch_up()
    return mirror


def drain(consumer: OonaConsumer, rounds: int = 1000) -> None:
    for _ in range(rounds):
        if not consumer.poll():
            return
    raise AssertionError("the consumer still had work after its rounds")


def test_emergency_queue_is_drained_before_normal_traffic(
    store: EventStore, shared_redis: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    events = []
    for i in range(300):
        events.append(epoch_event(epoch=i))
        if i % 2:
            events.append(emergency_event())
    store.append(events)
    mirror_into(store, shared_redis, prefix, tmp_path)
    order: list[Queue] = []
    consumer = OonaConsumer(
        shared_redis, "g", lambda d, tx: order.append(d.queue), keys=OonaKeys(prefix), batch_size=40
    )
    consumer.ensure_groups()
    drain(consumer)
    assert order == [Queue.EMERGENCY] * 150 + [Queue.NORMAL] * 300
    assert consumer.stats.handled == 450


def test_poison_message_goes_to_dead_letters_after_max_attempts_with_its_error(
    store: EventStore, shared_redis: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    poison = epoch_event(epoch=13)
    store.append([epoch_event(epoch=1), poison, epoch_event(epoch=2)])
    mirror_into(store, shared_redis, prefix, tmp_path)
    handled: list[str] = []

    def handler(delivery: Delivery, tx: Pipeline) -> None:
        if delivery.envelope.event_id == poison.event_id:
            raise ValueError("epoch 13 is cursed")
        handled.append(delivery.envelope.event_id)

    keys = OonaKeys(prefix)
    before = metric("esper_oona_dead_letters_total", queue="normal")
    consumer = OonaConsumer(shared_redis, "g", handler, keys=keys, claim_idle_ms=0)
    consumer.ensure_groups()
    for _ in range(20):
        consumer.poll()
    assert len(handled) == 2
    assert consumer.stats.failures == 5
    dead = shared_redis.xrange(keys.dead_letters)
    assert len(dead) == 1
    fields = {k.decode(): v for k, v in dead[0][1].items()}
    assert fields["event_id"].decode() == poison.event_id
    assert fields["attempts"] == b"5"
    assert fields["reason"] == b"ValueError: epoch 13 is cursed"
    assert fields["queue"] == b"normal" and fields["group"] == b"g"
    assert position_of(fields["entry_id"]) == 2
    assert shared_redis.xpending(keys.queue(Queue.NORMAL), "g")["pending"] == 0
    assert not shared_redis.exists(keys.failures("g"))
    assert metric("esper_oona_dead_letters_total", queue="normal") - before == 1


def test_entry_never_acked_by_dying_consumers_is_dead_lettered(
    store: EventStore, shared_redis: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    store.append([epoch_event(epoch=1)])
    mirror_into(store, shared_redis, prefix, tmp_path)
    keys = OonaKeys(prefix)
    key = keys.queue(Queue.NORMAL)
    consumer = OonaConsumer(shared_redis, "g", lambda d, tx: None, keys=keys, claim_idle_ms=0, max_attempts=3)
    consumer.ensure_groups()
    # three consumers took it and died without an ack or a recorded error
    shared_redis.xreadgroup("g", "ghost-1", {key: ">"})
    shared_redis.xclaim(key, "g", "ghost-2", 0, ["1-0"])
    shared_redis.xclaim(key, "g", "ghost-3", 0, ["1-0"])
    assert consumer.reclaim() == 1
    assert consumer.stats.handled == 0 and consumer.stats.dead_letters == 1
    ((_, fields),) = shared_redis.xrange(keys.dead_letters)
    assert b"not acknowledged after 3 deliveries" in fields[b"reason"]


def test_handlers_are_idempotent_by_event_id(
    store: EventStore, shared_redis: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    store.append([epoch_event(epoch=i) for i in range(30)])
    mirror_into(store, shared_redis, prefix, tmp_path)
    keys = OonaKeys(prefix)
    calls: list[str] = []

    def handler(delivery: Delivery, tx: Pipeline) -> None:
        calls.append(delivery.envelope.event_id)
        tx.incr(f"{prefix}:effects")

    consumer = OonaConsumer(shared_redis, "g", handler, keys=keys, queues=[Queue.NORMAL])
    consumer.ensure_groups()
    drain(consumer)
    # the group is recreated from the start (an operator, or a Redis restored from an old snapshot):
    # every entry is delivered again, none reaches the handler
    shared_redis.xgroup_destroy(keys.queue(Queue.NORMAL), "g")
    consumer.ensure_groups()
    drain(consumer)
    assert len(calls) == len(set(calls)) == 30
    assert consumer.stats.duplicates == 30
    assert shared_redis.get(f"{prefix}:effects") == b"30"


def test_load_past_both_backpressure_thresholds(
    store: EventStore, shared_redis: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    keys = OonaKeys(prefix)
    normal, telemetry, policies, emergencies, reports = 9000, 300, 20, 10, 10
    store.append([epoch_event(epoch=i) for i in range(normal)])
    store.append(
        [telemetry_event() for _ in range(telemetry)]
        + [policy_event(f"v{i}") for i in range(policies)]
        + [emergency_event() for _ in range(emergencies)]
        + [field_report_event() for _ in range(reports)]
        + [epoch_event(epoch=i) for i in range(200)]
    )
    slow = OonaConsumer(shared_redis, "slow", lambda d, tx: None, keys=keys, batch_size=500)
    slow.ensure_groups()  # registered, not consuming yet: everything it is sent stays pending
    dropped_before = metric("esper_oona_dropped_messages_total", queue="telemetry")
    rerouted_before = metric("esper_oona_rerouted_messages_total")

    fanout = OonaFanout(keys, Thresholds())
    mirror = Mirror(store, shared_redis, tmp_path, prefix=prefix, fanout=fanout, housekeeping_interval=0.0)
    mirror.catch_up()

    def length(queue: Queue) -> int:
        return int(shared_redis.xlen(keys.queue(queue)))

    # above 4,000 pending, normal traffic went to the overflow queue; above 8,000 telemetry was dropped
    assert length(Queue.NORMAL) == 4001
    assert length(Queue.OVERFLOW) == fanout.rerouted == normal + 200 - 4001
    assert length(Queue.TELEMETRY) == 0 and fanout.dropped == telemetry
    assert metric("esper_oona_dropped_messages_total", queue="telemetry") - dropped_before == telemetry
    assert metric("esper_oona_rerouted_messages_total") - rerouted_before == fanout.rerouted
    # events of record are never dropped
    assert (length(Queue.POLICY), length(Queue.EMERGENCY), length(Queue.FIELD_REPORTS)) == (
        policies,
        emergencies,
        reports,
    )
    assert_redis_equals_log(shared_redis, store, prefix)
    total = normal + 200 + policies + emergencies + reports
    assert fanout.depth == total
    assert metric("esper_oona_bus_depth_messages") == total
    assert metric("esper_oona_queue_depth_messages", queue="overflow") == length(Queue.OVERFLOW)

    order: list[Queue] = []
    slow.handler = lambda d, tx: order.append(d.queue)
    drain(slow, rounds=100)
    assert len(order) == total and order[:emergencies] == [Queue.EMERGENCY] * emergencies
    mirror.housekeeping(force=True)
    assert fanout.depth == 0 and length(Queue.NORMAL) == length(Queue.OVERFLOW) == 0


def test_reseeding_after_redis_lost_its_data_applies_no_backpressure_to_consumed_entries(
    store: EventStore, shared_redis: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    keys = OonaKeys(prefix)
    consumer = OonaConsumer(shared_redis, "g", lambda d, tx: None, keys=keys, batch_size=1000)
    consumer.ensure_groups()
    fanout = OonaFanout(keys)
    mirror = Mirror(store, shared_redis, tmp_path, prefix=prefix, fanout=fanout, batch_size=1000)
    for _ in range(3):  # a consumer that keeps up: the bus never gets near a threshold
        store.append([epoch_event(epoch=i) for i in range(3000)] + [telemetry_event() for _ in range(30)])
        mirror.catch_up()
        drain(consumer)
    mirror.housekeeping(force=True)
    assert fanout.depth == 0 and fanout.rerouted == 0 and fanout.dropped == 0

    delete_prefix(shared_redis, prefix)  # Redis lost everything
    store.append([epoch_event(epoch=1), telemetry_event()])
    fanout = OonaFanout(keys)
    mirror = Mirror(store, shared_redis, tmp_path, prefix=prefix, fanout=fanout, batch_size=1000)
    mirror.catch_up()
    assert mirror.reseeds == 1
    assert fanout.rerouted == 0 and fanout.dropped == 0
    assert_redis_equals_log(shared_redis, store, prefix)
    # the group came back where it was: only the two new events are delivered
    handled: list[int] = []
    consumer.handler = lambda d, tx: handled.append(d.position)
    drain(consumer)
    assert sorted(handled) == [9091, 9092]


def test_a_group_nobody_restores_is_recreated_by_its_consumer(
    store: EventStore, shared_redis: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    store.append([epoch_event(epoch=i) for i in range(20)])
    mirror_into(store, shared_redis, prefix, tmp_path)
    keys = OonaKeys(prefix)
    handled: list[str] = []
    consumer = OonaConsumer(
        shared_redis, "g", lambda d, tx: handled.append(d.envelope.event_id), keys=keys, queues=[Queue.NORMAL]
    )
    consumer.ensure_groups()
    drain(consumer)
    shared_redis.xgroup_destroy(keys.queue(Queue.NORMAL), "g")  # and no mirror holds a cursor for it
    stop = threading.Event()
    options = {"block_ms": 20, "regroup_after": 0.1}
    worker = threading.Thread(target=consumer.run, args=(stop,), kwargs=options)
    worker.start()
    try:
        wait_until(lambda: consumer.stats.duplicates == 20)
    finally:
        stop.set()
        worker.join(10)
    assert len(handled) == 20
