"""Consuming the Oona bus on Redis Streams (publishing is `domains.oona.fanout`).

`OonaConsumer` reads with a consumer group, queue by queue in `DRAIN_ORDER` (emergency first),
and for each entry:
- skips it (acks) if the group already handled its event_id (a sorted set in Redis);
- calls `handler(delivery, tx)`; `tx` is a MULTI pipeline the handler may queue its own Redis writes on:
  they commit in one transaction per batch with the acks and the event_id marks (the writes of a handler
  that raised are dropped), so effects written there happen exactly once even if the consumer dies
  mid-batch; other effects happen at least once;
- on an exception keeps the entry pending with the error recorded; entries idle beyond `claim_idle_ms` are
  reclaimed with XAUTOCLAIM and redelivered; after `max_attempts` failed attempts (handler errors, or
  deliveries never acked because a consumer died) the entry moves to the dead-letter stream with the reason.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.client import Pipeline

from domains.oona.metrics import (
    DEAD_LETTERS,
    DUPLICATES,
    FAILURES,
    HANDLED,
    REDELIVERIES,
)
from domains.oona.routing import DRAIN_ORDER, OonaKeys, Queue
from eventstore.mirror import (
    REDIS_ERRORS,
    as_text,
    position_of,
)
from leyline import DecodeError, decode_envelope, pb

DEFAULT_MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Delivery:
    queue: Queue
    entry_id: str
    envelope: pb.EventEnvelope

    @property
    def position(self) -> int:
        return position_of(self.entry_id)


Handler = Callable[[Delivery, Pipeline], None]


class GroupMissing(Exception):
    """A queue's consumer group is gone (Redis lost its data); the mirror recreates it at its cursor."""


@contextlib.contextmanager
def _group_required() -> Iterator[None]:
    """Turn Redis's NOGROUP reply into GroupMissing."""
    try:
        yield
    except redis.exceptions.ResponseError as exc:
        if "NOGROUP" in str(exc):
            raise GroupMissing(str(exc)) from None
        raise


@dataclass
class ConsumerStats:
    handled: int = 0
    duplicates: int = 0
    failures: int = 0
    redelivered: int = 0
    dead_letters: int = 0


class OonaConsumer:
    """One consumer of a group over some queues (all by default), drained in DRAIN_ORDER.

    `client` must return bytes (redis-py's default, as `eventstore.mirror.connect_redis` gives): envelopes
    are binary. Use `poll()` to drive it from your own loop, or `run(stop)` on a thread of its own.
    """

    def __init__(
        self,
        client: redis.Redis,
        group: str,
        handler: Handler,
        *,
        keys: OonaKeys | None = None,
        queues: Sequence[Queue] = DRAIN_ORDER,
        name: str | None = None,
        batch_size: int = 100,
        claim_idle_ms: int = 30_000,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.client = client
        self.group = group
        self.handler = handler
        self.oona_keys = keys or OonaKeys()
        self.queues = [queue for queue in DRAIN_ORDER if queue in set(queues)]
        self.name = name or f"consumer-{uuid.uuid4().hex[:12]}"
        self.batch_size = batch_size
        self.claim_idle_ms = claim_idle_ms
        self.max_attempts = max_attempts
        self.stats = ConsumerStats()
        self._queue_of = {self.oona_keys.queue(queue): queue for queue in self.queues}
        self._next_reclaim = 0.0

    def ensure_groups(self) -> None:
        """Create the group on each queue if it does not exist, from the oldest entry Redis holds."""
        for queue in self.queues:
            try:
                self.client.xgroup_create(self.oona_keys.queue(queue), self.group, id="0-0", mkstream=True)
            except redis.exceptions.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    # ------------------------------------------------------------------ polling

    def poll(self, block_ms: int = 0) -> int:
        """One round: reclaim stuck entries when due, then one batch of the first non-empty queue in drain
        order; if all are empty, block up to block_ms on all of them. Returns the entries processed."""
        processed = self.reclaim(force=False)
        for queue in self.queues:
            replies = self._read({self.oona_keys.queue(queue): ">"}, block_ms=None)
            if replies:
                return processed + self._process_replies(replies)
        if block_ms > 0:
            replies = self._read({self.oona_keys.queue(queue): ">" for queue in self.queues}, block_ms)
            processed += self._process_replies(replies)
        return processed

    def _read(self, streams: dict[Any, Any], block_ms: int | None) -> list[Any]:
        with _group_required():
            replies: Any = self.client.xreadgroup(
                self.group, self.name, streams, count=self.batch_size, block=block_ms
            )
        return replies

    def _process_replies(self, replies: list[Any]) -> int:
        by_queue = {self._queue_of[as_text(key)]: entries for key, entries in replies}
        return sum(self._process(queue, by_queue[queue]) for queue in self.queues if queue in by_queue)

    def run(self, stop: threading.Event, block_ms: int = 200, regroup_after: float = 10.0) -> None:
        """Poll until `stop` is set. Redis errors back off; a group missing for `regroup_after` seconds
        (no mirror recreated it at its durable cursor) is recreated from the oldest entry Redis holds."""
        backoff = 0.05
        missing_since: float | None = None
        while not stop.is_set():
            try:
                self.poll(block_ms)
                backoff = 0.05
                missing_since = None
            except GroupMissing:
                now = time.monotonic()
                missing_since = missing_since if missing_since is not None else now
                if now - missing_since >= regroup_after:
                    self.ensure_groups()
                    missing_since = None
                stop.wait(backoff)
                backoff = min(1.0, backoff * 2)
            except REDIS_ERRORS:
                stop.wait(backoff)
                backoff = min(1.0, backoff * 2)

    # ------------------------------------------------------------------ handling

    def _process(self, queue: Queue, entries: Sequence[tuple[bytes, dict[bytes, bytes]]]) -> int:
        key = self.oona_keys.queue(queue)
        decoded: list[Delivery] = []
        for raw_id, fields in entries:
            eid = raw_id.decode()
            try:
                decoded.append(Delivery(queue, eid, decode_envelope(fields[b"envelope"])))
            except (DecodeError, KeyError) as exc:
                self._dead_letter(queue, eid, fields, 1, f"undecodable entry: {exc}")
        if not decoded:
            return len(entries)
        scores = self.client.zmscore(
            self.oona_keys.handled(self.group), [d.envelope.event_id for d in decoded]
        )
        done = [d for d, score in zip(decoded, scores, strict=True) if score is not None]
        fresh = [d for d, score in zip(decoded, scores, strict=True) if score is None]
        tx = self.client.pipeline(transaction=True)
        failed: list[tuple[Delivery, str]] = []
        completed: list[Delivery] = []
        for delivery in fresh:
            mark = len(tx)
            try:
                self.handler(delivery, tx)
            except Exception as exc:
                del tx.command_stack[mark:]  # only completed handlers' writes commit
                failed.append((delivery, f"{type(exc).__name__}: {exc}"))
                continue
            tx.zadd(self.oona_keys.handled(self.group), {delivery.envelope.event_id: delivery.position})
            completed.append(delivery)
        acked = done + completed
        if acked:
            tx.xack(key, self.group, *[d.entry_id for d in acked])
            tx.hdel(
                self.oona_keys.failures(self.group), *[_failure_field(d.queue, d.entry_id) for d in acked]
            )
            tx.execute()
        self.stats.duplicates += len(done)
        self.stats.handled += len(completed)
        DUPLICATES.labels(queue.value).inc(len(done))
        HANDLED.labels(queue.value).inc(len(completed))
        for delivery, error in failed:
            self._failed(delivery, error)
        return len(entries)

    def _failed(self, delivery: Delivery, error: str) -> None:
        self.stats.failures += 1
        FAILURES.labels(delivery.queue.value).inc()
        failures_key = self.oona_keys.failures(self.group)
        field = _failure_field(delivery.queue, delivery.entry_id)
        previous = self.client.hget(failures_key, field)
        attempts = (int(as_text(previous).split("|", 1)[0]) if previous else 0) + 1
        if attempts >= self.max_attempts:
            fields = {b"envelope": delivery.envelope.SerializeToString()}
            self._dead_letter(delivery.queue, delivery.entry_id, fields, attempts, error)
        else:
            self.client.hset(failures_key, field, f"{attempts}|{error}")

    def _dead_letter(
        self, queue: Queue, eid: str, fields: Mapping[bytes, bytes], attempts: int, reason: str
    ) -> None:
        envelope = fields.get(b"envelope", b"")
        event_id, event_type = "", ""
        try:
            decoded = decode_envelope(envelope)
            event_id, event_type = decoded.event_id, decoded.event_type
        except DecodeError:
            pass
        tx = self.client.pipeline(transaction=True)
        tx.xadd(
            self.oona_keys.dead_letters,
            {
                "queue": queue.value,
                "entry_id": eid,
                "group": self.group,
                "event_id": event_id,
                "event_type": event_type,
                "attempts": attempts,
                "reason": reason,
                "envelope": envelope,
            },
        )
        tx.xack(self.oona_keys.queue(queue), self.group, eid)
        tx.hdel(self.oona_keys.failures(self.group), _failure_field(queue, eid))
        tx.execute()
        self.stats.dead_letters += 1
        DEAD_LETTERS.labels(queue.value).inc()

    # ------------------------------------------------------------------ redelivery

    def reclaim(self, force: bool = True) -> int:
        """Claim entries idle beyond claim_idle_ms from any consumer of the group and process them;
        entries delivered max_attempts times without an ack go to the dead-letter stream."""
        now = time.monotonic()
        if not force and now < self._next_reclaim:
            return 0
        self._next_reclaim = now + self.claim_idle_ms / 2000
        processed = 0
        for queue in self.queues:
            key = self.oona_keys.queue(queue)
            start = "0-0"
            while True:
                with _group_required():
                    next_start, claimed, _deleted = self.client.xautoclaim(
                        key, self.group, self.name, self.claim_idle_ms, start, count=self.batch_size
                    )
                if claimed:
                    processed += self._redeliver(queue, key, claimed)
                if next_start in (b"0-0", "0-0"):
                    break
                start = next_start
        self._prune_handled()
        return processed

    def _redeliver(self, queue: Queue, key: str, claimed: list[tuple[bytes, dict[bytes, bytes]]]) -> int:
        self.stats.redelivered += len(claimed)
        REDELIVERIES.labels(queue.value).inc(len(claimed))
        counts = {
            row["message_id"]: row["times_delivered"]
            for row in self.client.xpending_range(
                key, self.group, claimed[0][0], claimed[-1][0], len(claimed), consumername=self.name
            )
        }
        failures_key = self.oona_keys.failures(self.group)
        retry = []
        for raw_id, fields in claimed:
            previous_deliveries = int(counts.get(raw_id, 1)) - 1
            if previous_deliveries >= self.max_attempts:
                eid = raw_id.decode()
                recorded = self.client.hget(failures_key, _failure_field(queue, eid))
                reason = (
                    as_text(recorded).split("|", 1)[1]
                    if recorded
                    else f"not acknowledged after {previous_deliveries} deliveries (consumer died or hung)"
                )
                self._dead_letter(queue, eid, fields, previous_deliveries, reason)
            else:
                retry.append((raw_id, fields))
        if retry:
            self._process(queue, retry)
        return len(claimed)

    def _prune_handled(self) -> None:
        """Forget handled event_ids below every position the group could still be redelivered."""
        pipe = self.client.pipeline(transaction=False)
        for queue in self.queues:
            pipe.xpending(self.oona_keys.queue(queue), self.group)
            pipe.xinfo_groups(self.oona_keys.queue(queue))
        replies = pipe.execute(raise_on_error=False)
        floors = []
        for summary, infos in zip(replies[::2], replies[1::2], strict=True):
            if isinstance(summary, Exception) or isinstance(infos, Exception):
                return
            if summary["pending"]:
                floors.append(position_of(summary["min"]))
                continue
            for info in infos:
                # a queue the group has fully read adds no floor: its next entries come after the mirror's
                # position, above every event_id handled so far
                if as_text(info["name"]) == self.group and info["lag"] != 0:
                    floors.append(position_of(info["last-delivered-id"]) + 1)
        if floors:
            self.client.zremrangebyscore(self.oona_keys.handled(self.group), "-inf", f"({min(floors)}")


def _failure_field(queue: Queue, entry_id: str) -> str:
    """An entry's field in the group's failures hash (OonaKeys.failures)."""
    return f"{queue.value} {entry_id}"
