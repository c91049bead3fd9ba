"""Stateful model of a consumer group: publishing, polling, consumers dying mid-batch and reclaiming.

Whatever the interleaving, every published event ends up exactly once either handled (its transactional
effect written once) or in the dead-letter stream, and a poison event is never handled.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from redis.client import Pipeline

from domains.oona.bus import Delivery, OonaConsumer
from domains.oona.fanout import OonaFanout
from domains.oona.routing import OonaKeys, Queue
from eventstore import open_store
from eventstore.mirror import Mirror, connect_redis
from leyline.datadir import DataDir
from tests.mirror.redis_support import SHARED_REDIS, delete_prefix, epoch_event

pytestmark = pytest.mark.redis

MAX_ATTEMPTS = 3


class ConsumerGroupModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="oona-model-"))
        self.prefix = f"m{uuid.uuid4().hex[:10]}"
        self.keys = OonaKeys(self.prefix)
        self.client = connect_redis(SHARED_REDIS)
        self.store = open_store(DataDir(self.directory).log)
        self.mirror = Mirror(
            self.store, self.client, self.directory, prefix=self.prefix, fanout=OonaFanout(self.keys)
        )
        self.published: dict[str, bool] = {}  # event_id → poison
        self.consumers = [self.new_consumer() for _ in range(2)]

    def new_consumer(self) -> OonaConsumer:
        consumer = OonaConsumer(
            self.client,
            "model",
            self.handle,
            keys=self.keys,
            queues=[Queue.NORMAL],
            batch_size=4,
            claim_idle_ms=0,
            max_attempts=MAX_ATTEMPTS,
        )
        consumer.ensure_groups()
        return consumer

    def handle(self, delivery: Delivery, tx: Pipeline) -> None:
        if delivery.envelope.run_id == "poison":
            raise RuntimeError("poison")
        tx.rpush(f"{self.prefix}:effects", delivery.envelope.event_id)

    @rule(count=st.integers(1, 6), poison=st.integers(0, 2))
    def publish(self, count: int, poison: int) -> None:
        events = [epoch_event(run="poison" if i < poison else "ok", epoch=i) for i in range(count)]
        self.store.append(events)
        for event in events:
            self.published[event.event_id] = event.run_id == "poison"
        self.mirror.catch_up()

    @rule(index=st.integers(0, 1))
    def poll(self, index: int) -> None:
        self.consumers[index].poll()

    @rule(index=st.integers(0, 1), count=st.integers(1, 4))
    def die_mid_batch(self, index: int, count: int) -> None:
        """The consumer takes a batch and dies before committing it; a new process replaces it."""
        doomed = self.consumers[index]
        self.client.xreadgroup("model", doomed.name, {self.keys.queue(Queue.NORMAL): ">"}, count=count)
        self.consumers[index] = self.new_consumer()

    @rule(index=st.integers(0, 1))
    def reclaim(self, index: int) -> None:
        self.consumers[index].reclaim()

    def effects(self) -> Counter[str]:
        return Counter(item.decode() for item in self.client.lrange(f"{self.prefix}:effects", 0, -1))

    def dead(self) -> Counter[str]:
        return Counter(
            fields[b"event_id"].decode() for _, fields in self.client.xrange(self.keys.dead_letters)
        )

    @invariant()
    def handled_at_most_once_and_never_poison(self) -> None:
        effects, dead = self.effects(), self.dead()
        assert all(count == 1 for count in effects.values())
        assert all(count == 1 for count in dead.values())
        assert not set(effects) & set(dead)
        assert not any(self.published[event_id] for event_id in effects)

    def teardown(self) -> None:
        try:
            consumer = self.consumers[0]
            for _ in range(200):
                consumer.poll()
                pending = self.client.xpending(self.keys.queue(Queue.NORMAL), "model")["pending"]
                if not pending and not consumer.poll():
                    break
            effects, dead = self.effects(), self.dead()
            assert set(effects) | set(dead) == set(self.published)
            assert {event_id for event_id, poison in self.published.items() if poison} <= set(dead)
        finally:
            delete_prefix(self.client, self.prefix)
            self.client.close()
            self.store.close()
            shutil.rmtree(self.directory, ignore_errors=True)


ConsumerGroupModel.TestCase.settings = settings(max_examples=15, stateful_step_count=15, deadline=None)
test_consumer_group_model = ConsumerGroupModel.TestCase
