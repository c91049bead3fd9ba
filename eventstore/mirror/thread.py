"""The mirror on a background thread of the writing process."""

from __future__ import annotations

import threading
from pathlib import Path

from eventstore.api import EventStore
from eventstore.mirror.core import HealthListener, Mirror
from eventstore.mirror.fanout import Fanout
from eventstore.mirror.redis_keys import DEFAULT_BATCH, DEFAULT_PREFIX, connect_redis


class MirrorThread:
    """The mirror in the background of the writing process: `start()`, `stop()`; never blocks appends.

    It follows the store through a subscription on its own thread; while Redis is down it backs off and
    retries, then catches up; `on_health` hears of each outage and of the catch-up that ends it. A fatal
    error (another log in Redis) stops it and is kept in `error`.
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
        on_health: HealthListener | None = None,
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
        self.on_health = on_health
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="esper-redis-mirror", daemon=True)

    def _run(self) -> None:
        try:
            self.mirror.follow(self._stop, idle_timeout=self.idle_timeout, on_health=self.on_health)
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
