"""The Redis Streams mirror of the log (SPEC §5, §11). Redis is a mirror, never the source of truth.

Every committed event is XADDed with the entry id `<global position>-0`, so Redis rejects a re-add and
re-mirroring is idempotent. A rejected XADD counts as already mirrored only when the stream holds that very
entry: an id another producer put above the log's positions (XADD with `*`) would swallow every later
event, and stops the mirror with ForeignEntry instead. Keys (`prefix` defaults to `esper`):

- `<prefix>:cat:<category>`: one stream per category (`run`, `seed`, …) holding every event of it;
- the bus queues a `Fanout` adds (Oona: `<prefix>:oona:<queue>`), same entry ids;
- `<prefix>:mirror`: a marker hash {log_id, position}: which log Redis mirrors (the event_id at position 1)
  and the last position it holds. It is written by the same Lua script as each batch, which first checks
  it, so a Redis that restarted and lost its data (marker gone) or came back from an older snapshot
  (marker behind) is detected before anything is written, and the mirror re-mirrors from what Redis holds.

The durable cursor in `<data-dir>/mirror/` keeps the last mirrored position and, per stream, where each
consumer group has passed (its oldest pending entry, else its last delivered one). After Redis lost its
data, groups are recreated at those positions, never at `$`. Streams are trimmed by MINID behind their
slowest group; a stream without groups is never trimmed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from eventstore.api import EventStore, EventStoreError, Subscription
from eventstore.mirror_metrics import (
    MIRROR_BATCH_SECONDS,
    MIRROR_EVENTS,
    MIRROR_LAG,
    MIRROR_POSITION,
    MIRROR_REDIS_ERRORS,
    MIRROR_REJECTED,
    MIRROR_RESEEDS,
    MIRROR_TRIMMED,
)
from leyline import category_of, pb
from leyline.datadir import DataDir

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "esper"
DEFAULT_BATCH = 500
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

# Checks the marker, XADDs the batch and moves the marker in one atomic step. An XADD that Redis rejects
# counts as already mirrored only if the stream really holds that entry id; otherwise another producer put
# a higher id on the stream (XADD with `*`), nothing more of the log could go there, and the script stops
# with 'foreign' before it moves the marker.
# KEYS[1] marker, KEYS[2..] streams. ARGV: log id, position Redis must hold, position after the batch,
# then per event: its streams as comma-separated indexes into KEYS, position, event type, stream, envelope.
_MIRROR_BATCH_LUA = """
local marker = redis.call('HMGET', KEYS[1], 'log_id', 'position')
if marker[1] and marker[1] ~= ARGV[1] then
  return {'other_log', marker[1]}
end
local held = 0
if marker[2] then held = tonumber(marker[2]) end
if held ~= tonumber(ARGV[2]) then
  return {'moved', tostring(held)}
end
local rejected = 0
for i = 4, #ARGV, 5 do
  local id = ARGV[i + 1] .. '-0'
  for index in string.gmatch(ARGV[i], '%d+') do
    local reply = redis.pcall('XADD', KEYS[tonumber(index)], id,
      'event_type', ARGV[i + 2], 'stream', ARGV[i + 3], 'envelope', ARGV[i + 4])
    if type(reply) == 'table' and reply.err then
      if string.find(reply.err, 'equal or smaller', 1, true) then
        local key = KEYS[tonumber(index)]
        if #redis.call('XRANGE', key, id, id) == 0 then
          local info = redis.call('XINFO', 'STREAM', key)
          for field = 1, #info, 2 do
            if info[field] == 'last-generated-id' then
              return {'foreign', key, info[field + 1]}
            end
          end
          return {'foreign', key, '?'}
        end
        rejected = rejected + 1
      else
        return redis.error_reply(reply.err)
      end
    end
  end
end
redis.call('HSET', KEYS[1], 'log_id', ARGV[1], 'position', ARGV[3])
return {'ok', tostring(rejected)}
"""


class MirrorConflict(EventStoreError):
    """Redis already holds the mirror of another log under this prefix."""


class ForeignEntry(MirrorConflict):
    """A mirror stream holds an entry id above the log's positions that the mirror did not write: every
    later event of the log would be rejected there. The mirror refuses that stream instead of counting the
    rejections as already mirrored."""

    def __init__(self, key: str, found: str, position: int, marker: str) -> None:
        super().__init__(
            f"Redis stream {key} has reached entry id {found}, which the mirror did not write (another "
            f"producer adds to it, e.g. XADD with '*'), so the log's events from position {position} on "
            f"cannot be mirrored there; move that producer off the mirror's keys, delete {key} and set "
            f"'position' in {marker} to 0: the next mirror re-adds whatever Redis lacks"
        )
        self.key = key
        self.found = found
        self.position = position


def connect_redis(url: str) -> redis.Redis:
    """A client that fails fast (one reconnect attempt, no backoff): callers own retry and backoff."""
    return redis.Redis.from_url(
        url, socket_timeout=5.0, socket_connect_timeout=2.0, retry=Retry(NoBackoff(), 1)
    )


def entry_id(position: int) -> str:
    return f"{position}-0"


def as_text(value: bytes | str) -> str:
    """A Redis reply value as text (redis-py types replies as bytes or str)."""
    return value.decode() if isinstance(value, bytes) else value


def position_of(stream_entry_id: bytes | str) -> int:
    return int(as_text(stream_entry_id).split("-", 1)[0])


def category_key(prefix: str, category: str) -> str:
    return f"{prefix}:cat:{category}"


def marker_key(prefix: str) -> str:
    return f"{prefix}:mirror"


def redacted(url: str) -> str:
    """The URL without its password, for messages and the cursor file."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class KeyState:
    """A stream with consumer groups: where its slowest group is and how many entries it has not passed."""

    passed: int  # position the slowest group has passed (oldest pending - 1, else last delivered)
    depth: int  # entries after `passed` (the stream is trimmed to exactly those)


class Fanout(Protocol):
    """Adds bus queues to the mirror (Oona): which keys an event also goes to, given the queue depths."""

    def queue_keys(self) -> Sequence[str]: ...

    def observe(self, states: Mapping[str, KeyState]) -> None:
        """The state of each of its keys that has consumer groups, sampled by the mirror."""
        ...

    def targets(self, envelope: pb.EventEnvelope) -> Sequence[str]: ...


@dataclass
class MirrorCursor:
    """The mirror's durable state in the data directory (atomic write, fsynced)."""

    log_id: str = ""
    position: int = 0
    groups: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> MirrorCursor:
        try:
            document = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            raise EventStoreError(
                f"mirror cursor {path} is unreadable ({exc}); delete it to reseed"
            ) from None
        return cls(
            log_id=str(document["log_id"]),
            position=int(document["position"]),
            groups={
                key: {g: int(p) for g, p in groups.items()} for key, groups in document["groups"].items()
            },
        )

    def copy(self) -> MirrorCursor:
        return replace(self, groups=dict(self.groups))

    def save(self, path: Path, extra: Mapping[str, str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {**extra, "log_id": self.log_id, "position": self.position, "groups": self.groups}
        temporary = path.with_suffix(".tmp")
        with open(temporary, "w") as handle:
            json.dump(document, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def cursor_path(data_dir: Path, redis_url: str, prefix: str) -> Path:
    """One cursor per (Redis server, prefix): mirroring to two servers keeps two cursors."""
    digest = hashlib.sha256(f"{redacted(redis_url)}|{prefix}".encode()).hexdigest()[:12]
    return DataDir.of(data_dir).mirror / f"cursor-{prefix}-{digest}.json"


@dataclass(frozen=True)
class BatchResult:
    events: int
    rejected: int


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
        redis_url = redis_url or _url_of(client)
        self.cursor_path = cursor_path(data_dir, redis_url, prefix)
        self.cursor = MirrorCursor.load(self.cursor_path)
        self._cursor_extra = {"redis": redacted(redis_url), "prefix": prefix}
        self._saved = self.cursor.copy()
        self._script = client.register_script(_MIRROR_BATCH_LUA)
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
    ) -> None:
        """Mirror live until `stop` is set. Redis errors back off and retry; nothing here blocks appends."""
        backoff = 0.05
        outage = False
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
                except REDIS_ERRORS as exc:
                    if not outage:
                        log.warning("Redis unreachable (%s): the mirror retries with backoff", exc)
                        outage = True
                    MIRROR_REDIS_ERRORS.inc()
                    self._held = None
                    MIRROR_LAG.set(max(0, self.store.head_position() - self.position))
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


def _url_of(client: redis.Redis) -> str:
    kwargs = client.get_connection_kwargs()
    return f"redis://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


class MirrorThread:
    """The mirror in the background of the writing process: `start()`, `stop()`; never blocks appends.

    It follows the store through a subscription on its own thread; while Redis is down it backs off and
    retries, then catches up. A fatal error (another log in Redis) stops it and is kept in `error`.
    """

    def __init__(
        self,
        store: EventStore,
        redis_url: str,
        data_dir: Path,
        *,
        prefix: str = DEFAULT_PREFIX,
        fanout: Fanout | None = None,
        batch_size: int = DEFAULT_BATCH,
        idle_timeout: float = 0.2,
        housekeeping_interval: float = 0.25,
        persist_interval: float = 1.0,
    ) -> None:
        self.mirror = Mirror(
            store,
            connect_redis(redis_url),
            data_dir,
            redis_url=redis_url,
            prefix=prefix,
            fanout=fanout,
            batch_size=batch_size,
            housekeeping_interval=housekeeping_interval,
            persist_interval=persist_interval,
        )
        self.idle_timeout = idle_timeout
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="esper-redis-mirror", daemon=True)

    def _run(self) -> None:
        try:
            self.mirror.follow(self._stop, idle_timeout=self.idle_timeout)
        except BaseException as exc:
            self.error = exc

    def start(self) -> MirrorThread:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self.mirror.client.close()

    @property
    def position(self) -> int:
        return self.mirror.position

    def is_alive(self) -> bool:
        return self._thread.is_alive()
