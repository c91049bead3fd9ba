"""The mirror never reports success with a gap: an entry another producer put on a mirror stream is
refused, never counted as already mirrored, and what the mirror reports is what Redis committed, even
when the reply to a committed batch was lost."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from domains.oona.bus import OonaFanout
from domains.oona.routing import OonaKeys, Queue
from eventstore import EventStore
from eventstore.mirror import ForeignEntry, Mirror, category_key, connect_redis, marker_key
from leyline import category_of
from tests.mirror.redis_support import PrivateRedis, emergency_event
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


class LossyProxy:
    """A TCP proxy to Redis that loses the reply to the first script call after `arm()`: Redis runs the
    script, the client sees its connection drop (as a reply lost under load or on the network would
    leave it) and `on_loss` is called at that moment."""

    def __init__(self, port: int, on_loss: Callable[[], None]) -> None:
        self.upstream = port
        self.on_loss = on_loss
        self.armed = False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self) -> None:
        self.armed = True

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                server = socket.create_connection(("127.0.0.1", self.upstream))
                losing = threading.Event()
                threading.Thread(target=self._requests, args=(client, server, losing), daemon=True).start()
                threading.Thread(target=self._replies, args=(server, client, losing), daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket, losing: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if self.armed and b"EVALSHA" in data:
                    self.armed = False
                    losing.set()
                server.sendall(data)

    def _replies(self, server: socket.socket, client: socket.socket, losing: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := server.recv(65536):
                if losing.is_set():
                    self.on_loss()
                    client.shutdown(socket.SHUT_RDWR)
                    client.close()
                    return
                client.sendall(data)

    def close(self) -> None:
        self.listener.close()


def test_a_lost_reply_never_makes_the_mirror_report_less_than_redis_holds(
    store: EventStore, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    """A batch commits in Redis but its reply is lost; the client's retry is answered 'moved' and the
    mirror no longer knows what Redis holds. Stopped right then (Ctrl-C in `esper mirror --follow`), it
    reports what Redis committed, not the position before that batch."""
    stop = threading.Event()
    proxy = LossyProxy(private_redis.port, stop.set)
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
