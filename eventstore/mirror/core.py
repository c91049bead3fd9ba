"""The Mirror: syncs with what Redis holds, mirrors batches, keeps consumer groups, trims and follows."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import redis

from eventstore.api import EventStore, EventStoreError, Subscription
from eventstore.mirror.cursor import MirrorCursor, cursor_path
from eventstore.mirror.fanout import Fanout, KeyState
from eventstore.mirror.redis_keys import (
    DEFAULT_BATCH,
    DEFAULT_PREFIX,
    REDIS_ERRORS,
    as_text,
    category_key,
    entry_id,
    marker_key,
    position_of,
    redacted,
    url_of,
)
from eventstore.mirror.script import MIRROR_BATCH_LUA, BatchResult, ForeignEntry, MirrorConflict
from eventstore.mirror_metrics import (
    MIRROR_BATCH_SECONDS,
    MIRROR_DOWN,
    MIRROR_EVENTS,
    MIRROR_LAG,
    MIRROR_POSITION,
    MIRROR_REDIS_ERRORS,
    MIRROR_REJECTED,
    MIRROR_RESEEDS,
    MIRROR_TRIMMED,
)
from leyline import category_of, pb

log = logging.getLogger("eventstore.mirror")

# told of the mirror's health changes: (healthy, lag in positions, what happened). Unhealthy at the first
# failed Redis call of an outage; healthy again once the mirror holds the head it saw when Redis came back.
HealthListener = Callable[[bool, int, str], None]


class Mirror:
    """Mirrors the store into Redis. Not thread-safe: one Mirror per thread (see MirrorThread)."""

    def __init__(
        self,
        store: EventStore,
        client: redis.Redis,
        data_dir: Path,
        *,
        redis_url: str = "",
        prefix: str = DEFAULT_PREFIX,
        fanout: Fanout | None = None,
        batch_size: int = DEFAULT_BATCH,
        housekeeping_interval: float = 0.25,
        persist_interval: float = 1.0,
    ) -> None:
        self.store = store
        self.client = client
        self.prefix = prefix
        self.fanout = fanout
        self.batch_size = batch_size
        self.housekeeping_interval = housekeeping_interval
        self.persist_interval = persist_interval
        self._next_persist = 0.0
        redis_url = redis_url or url_of(client)
        self.cursor_path = cursor_path(data_dir, redis_url, prefix)
        self.cursor = MirrorCursor.load(self.cursor_path)
        self._cursor_extra = {"redis": redacted(redis_url), "prefix": prefix}
        self._saved = self.cursor.copy()
        self._script = client.register_script(MIRROR_BATCH_LUA)
        self._log_id = ""
        self._held: int | None = None  # position Redis holds; None until synced
        self._keys: set[str] = set()
        self._written: set[str] = set()  # keys this mirror wrote since Redis last went back
        self._next_housekeeping = 0.0
        self.reseeds = 0

    # ------------------------------------------------------------------ state

    @property
    def position(self) -> int:
        """The last position Redis is known to hold (the durable cursor before the first sync, and while
        Redis cannot be asked)."""
        return self.cursor.position if self._held is None else self._held

    def log_id(self) -> str:
        """The log's identity: the event_id at position 1 ("" while the log is empty)."""
        if not self._log_id:
            first = list(self.store.read_all(1, limit=1))
            if first:
                self._log_id = first[0].event_id
                if self.cursor.log_id != self._log_id:
                    # a cursor left by another log in this data directory says nothing about this one
                    self.cursor = MirrorCursor(log_id=self._log_id)
        return self._log_id

    def sync(self) -> int:
        """Read what Redis holds; after a data loss recreate the groups at their durable positions."""
        log_id = self.log_id()
        stored_log, stored_position = self.client.hmget(marker_key(self.prefix), ["log_id", "position"])
        if stored_log is not None and as_text(stored_log) != log_id:
            raise MirrorConflict(
                f"Redis already mirrors another log (first event {as_text(stored_log)}) under prefix "
                f"{self.prefix!r}; use another prefix or Redis database"
            )
        held = int(stored_position) if stored_position is not None else 0
        if held < self.cursor.position or (stored_position is None and self.cursor.groups):
            reason = "lost" if stored_position is None else "behind"
            MIRROR_RESEEDS.labels(reason).inc()
            log.warning(
                "Redis %s: it holds position %d, the mirror had reached %d; re-mirroring from there and "
                "recreating %d consumer group(s) at their durable positions",
                "lost its data" if reason == "lost" else "went back to an older state",
                held,
                self.cursor.position,
                sum(len(groups) for groups in self.cursor.groups.values()),
            )
            self.reseeds += 1
            self._recreate_groups()
            self._written.clear()
        self._held = held
        self.cursor.position = held
        self._keys |= {
            as_text(key) for key in self.client.scan_iter(match=f"{self.prefix}:cat:*", count=1000)
        }
        if self.fanout is not None:
            self._keys |= set(self.fanout.queue_keys())
        self._keys |= set(self.cursor.groups)
        MIRROR_POSITION.set(held)
        return held

    def _recreate_groups(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        for key, groups in self.cursor.groups.items():
            for group, passed in groups.items():
                pipe.xgroup_create(key, group, id=entry_id(passed), mkstream=True)
        for reply in pipe.execute(raise_on_error=False):
            if isinstance(reply, Exception) and "BUSYGROUP" not in str(reply):
                raise reply

    # ------------------------------------------------------------------ mirroring

    def mirror_batch(self, events: Sequence[pb.EventEnvelope]) -> BatchResult:
        """XADD a contiguous batch that starts right after the held position.

        If Redis no longer holds what the mirror last wrote (restart, restore), nothing is written, the
        result counts no events and the next call resyncs first.
        """
        if self._held is None:
            self.sync()
        assert self._held is not None
        if not events:
            return BatchResult(0, 0)
        if events[0].global_position != self._held + 1:
            raise EventStoreError(
                f"mirror batch starts at position {events[0].global_position}, Redis holds {self._held}"
            )
        started = time.perf_counter()
        key_index: dict[str, str] = {}
        keys: list[str] = [marker_key(self.prefix)]
        argv: list[Any] = [self.log_id(), self._held, events[-1].global_position]
        for envelope in events:
            targets = [category_key(self.prefix, category_of(envelope.stream))]
            if self.fanout is not None:
                targets.extend(self.fanout.targets(envelope))
            indexes = []
            for key in targets:
                index = key_index.get(key)
                if index is None:
                    keys.append(key)
                    index = key_index[key] = str(len(keys))
                indexes.append(index)
            argv += (
                ",".join(indexes),
                envelope.global_position,
                envelope.event_type,
                envelope.stream,
                envelope.SerializeToString(),
            )
        status, detail, *more = (as_text(value) for value in self._script(keys=keys, args=argv))
        if status != "ok":
            if status == "foreign":
                raise ForeignEntry(detail, more[0], events[0].global_position, marker_key(self.prefix))
            if status == "other_log":
                raise MirrorConflict(
                    f"Redis started mirroring another log (first event {detail}) under prefix {self.prefix!r}"
                )
            self._held = None  # Redis moved under us (restart, restore): resync before the next batch
            return BatchResult(0, 0)
        self._held = events[-1].global_position
        self.cursor.position = self._held
        self._keys.update(keys[1:])
        self._written.update(keys[1:])
        rejected = int(detail)
        MIRROR_EVENTS.inc(len(events))
        MIRROR_REJECTED.inc(rejected)
        MIRROR_POSITION.set(self._held)
        MIRROR_BATCH_SECONDS.observe(time.perf_counter() - started)
        return BatchResult(len(events), rejected)

    def catch_up(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Mirror everything up to the head as of now; return the number of events mirrored."""
        mirrored = 0
        head = self.store.head_position()
        held = self.sync()
        self.housekeeping(force=True)  # fresh queue depths before the first batch
        while held < head:
            batch = list(self.store.read_all(held + 1, limit=self.batch_size, to_position=head))
            if not batch:
                break
            result = self.mirror_batch(batch)
            if self._held is None:
                held = self.sync()
                continue
            mirrored += result.events
            held = self._held
            MIRROR_LAG.set(head - held)
            if progress is not None:
                progress(held, head)
            self.housekeeping(force=False)
        self.housekeeping(force=True)
        MIRROR_LAG.set(max(0, self.store.head_position() - held))
        return mirrored

    # ------------------------------------------------------------------ groups, trimming, depths

    def housekeeping(self, force: bool) -> None:
        """Sample consumer groups, trim behind the slowest, report depths, persist the cursor."""
        now = time.monotonic()
        if not force and now < self._next_housekeeping:
            return
        self._next_housekeeping = now + self.housekeeping_interval
        keys = sorted(self._keys)
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(marker_key(self.prefix), "position")
        for key in keys:
            pipe.xinfo_groups(key)
        replies = pipe.execute(raise_on_error=False)
        if replies[0] is None and self.position > 0:
            self._held = None  # Redis lost its data: never overwrite the durable group cursors with nothing
            return
        infos: dict[str, list[dict[str, Any]]] = {}
        missing = []
        for key, reply in zip(keys, replies[1:], strict=True):
            if isinstance(reply, Exception):
                if "no such key" not in str(reply):
                    raise reply
                if key in self._written:
                    missing.append(key)
            elif reply:
                infos[key] = reply
        if missing:
            # evicted or deleted (trimming leaves an empty stream, never no key): re-mirror from the start;
            # Redis rejects what it still holds and refills what it lost
            log.warning("Redis lost stream(s) %s; re-mirroring from the start of the log", ", ".join(missing))
            self.client.hset(marker_key(self.prefix), "position", 0)
            self._held = None
            return
        groups = self._passed_positions(infos)
        depths = self._trim(groups)
        if self.fanout is not None:
            self.fanout.observe(
                {
                    key: KeyState(min(groups[key].values()), depths[key])
                    for key in self.fanout.queue_keys()
                    if key in depths
                }
            )
        self.cursor.groups = groups
        if force or now >= self._next_persist:
            self.persist()

    def _passed_positions(self, infos: Mapping[str, list[dict[str, Any]]]) -> dict[str, dict[str, int]]:
        pipe = self.client.pipeline(transaction=False)
        waiting: list[tuple[str, str]] = []
        groups: dict[str, dict[str, int]] = {}
        for key, entries in infos.items():
            groups[key] = {}
            for info in entries:
                name = as_text(info["name"])
                groups[key][name] = position_of(info["last-delivered-id"])
                if info["pending"]:
                    pipe.xpending(key, name)
                    waiting.append((key, name))
        for (key, name), summary in zip(waiting, pipe.execute(), strict=True):
            if summary["pending"] and summary["min"] is not None:
                groups[key][name] = min(groups[key][name], position_of(summary["min"]) - 1)
        return groups

    def _trim(self, groups: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
        pipe = self.client.pipeline(transaction=False)
        keys = sorted(key for key, by_group in groups.items() if by_group)
        for key in keys:
            pipe.xtrim(key, minid=entry_id(min(groups[key].values()) + 1), approximate=False)
            pipe.xlen(key)
        replies = pipe.execute()
        depths = {}
        for index, key in enumerate(keys):
            MIRROR_TRIMMED.inc(replies[2 * index])
            depths[key] = int(replies[2 * index + 1])
        return depths

    def persist(self) -> None:
        """Write the durable cursor if it changed (two fsyncs: kept off the per-batch path)."""
        self._next_persist = time.monotonic() + self.persist_interval
        if self.cursor != self._saved:
            self.cursor.save(self.cursor_path, self._cursor_extra)
            self._saved = self.cursor.copy()

    # ------------------------------------------------------------------ following

    def follow(
        self,
        stop: threading.Event,
        idle_timeout: float = 0.5,
        max_backoff: float = 5.0,
        progress: Callable[[int, int], None] | None = None,
        on_health: HealthListener | None = None,
    ) -> None:
        """Mirror live until `stop` is set. Redis errors back off and retry; nothing here blocks appends."""
        backoff = 0.05
        outage = False
        catching_up_to: int | None = None  # the head when Redis came back, until the mirror holds it
        MIRROR_DOWN.set(0)
        subscription: Subscription | None = None
        next_position = -1  # the next position the subscription will yield
        try:
            while not stop.is_set():
                try:
                    held = self.sync() if self._held is None else self._held
                    if subscription is None or next_position != held + 1:
                        if subscription is not None:
                            subscription.close()
                        subscription = self.store.subscribe(from_position=held + 1, timeout=idle_timeout)
                        next_position = held + 1
                    events = subscription.poll(timeout=idle_timeout, max_events=self.batch_size)
                    if events:
                        next_position = events[-1].global_position + 1
                        self.mirror_batch(events)
                    head = self.store.head_position()
                    MIRROR_LAG.set(max(0, head - self.position))
                    if progress is not None:
                        progress(self.position, head)
                    self.housekeeping(force=False)
                    backoff = 0.05
                    if outage:
                        log.warning("Redis is back: mirroring from position %d", self.position)
                        outage = False
                        catching_up_to = head
                    if catching_up_to is not None and self.position >= catching_up_to:
                        catching_up_to = None
                        MIRROR_DOWN.set(0)
                        if on_health is not None:
                            on_health(True, max(0, head - self.position), f"caught up at {self.position}")
                except REDIS_ERRORS as exc:
                    lag = max(0, self.store.head_position() - self.position)
                    if not outage:
                        log.warning("Redis unreachable (%s): the mirror retries with backoff", exc)
                        outage = True
                        MIRROR_DOWN.set(1)
                        if on_health is not None and catching_up_to is None:
                            on_health(False, lag, f"Redis unreachable: {exc}")
                        catching_up_to = None
                    MIRROR_REDIS_ERRORS.inc()
                    self._held = None
                    MIRROR_LAG.set(lag)
                    stop.wait(backoff)
                    backoff = min(max_backoff, backoff * 2)
        finally:
            if subscription is not None:
                subscription.close()
            with contextlib.suppress(*REDIS_ERRORS):
                if self._held is None:
                    # a batch whose reply was lost (a timeout, the client's retry answered 'moved') may
                    # have committed: ask Redis, so that `position` is what it holds, not the stale cursor
                    self.sync()
                self.housekeeping(force=True)
            self.persist()
