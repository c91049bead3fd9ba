"""A consumer SIGKILLed mid-batch: its entries are redelivered to another consumer and handled once."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import redis
from redis.client import Pipeline

from domains.oona.bus import Delivery, OonaConsumer
from domains.oona.routing import OonaKeys, Queue
from eventstore import EventStore
from tests.mirror.redis_support import SHARED_REDIS, epoch_event, wait_until
from tests.oona.test_bus import mirror_into

pytestmark = pytest.mark.redis


def test_consumer_killed_mid_batch_is_redelivered_and_handled_once(
    store: EventStore, shared_redis: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    store.append([epoch_event(epoch=i) for i in range(250)])
    mirror_into(store, shared_redis, prefix, tmp_path)
    keys = OonaKeys(prefix)
    ready = tmp_path / "ready"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.oona.consumer_process", SHARED_REDIS, prefix, "g", "137", str(ready)],
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        wait_until(lambda: (ready.exists() and ready.read_text() != "") or process.poll() is not None)
        assert process.poll() is None, "the consumer process exited early"
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stuck = ready.read_text()
    # its first batch of 100 was committed; the second died with it after 37 handler calls: the handlers'
    # writes, acks and event_id marks of a batch commit together, so all 100 stay pending
    pending = shared_redis.xpending(keys.queue(Queue.NORMAL), "g")
    assert pending["pending"] == 100
    assert pending["min"].decode() == "101-0" and stuck == "138-0"
    assert shared_redis.llen(f"{prefix}:results") == 100

    def handler(delivery: Delivery, tx: Pipeline) -> None:
        tx.rpush(f"{prefix}:results", delivery.envelope.event_id)

    survivor = OonaConsumer(shared_redis, "g", handler, keys=keys, queues=[Queue.NORMAL], claim_idle_ms=0)
    while survivor.poll():
        pass
    assert survivor.stats.redelivered == 100
    results = Counter(item.decode() for item in shared_redis.lrange(f"{prefix}:results", 0, -1))
    assert set(results) == {e.event_id for e in store.read_all()}
    assert set(results.values()) == {1}
    assert shared_redis.xpending(keys.queue(Queue.NORMAL), "g")["pending"] == 0
