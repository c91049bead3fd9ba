"""Redis fixtures shared by the mirror and Oona tests: the shared server under a unique key prefix, or a
private redis-server on a free port for tests that kill it."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from eventstore import EventStore, open_store
from eventstore.mirror import connect_redis
from leyline import new_envelope, pb
from ops.redis_server import PrivateRedis

SHARED_REDIS = "redis://127.0.0.1:6379/0"


def wait_until(condition: Callable[[], bool], timeout: float = 60.0, interval: float = 0.01) -> None:
    """Poll until condition holds; the timeout only keeps a broken test from hanging."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    """Delete every key under the prefix."""
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def shared_redis(prefix: str) -> Iterator[redis.Redis]:
    """The shared server; every key the test made under its prefix is deleted afterwards."""
    client = connect_redis(SHARED_REDIS)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"Redis is not reachable on 127.0.0.1:6379: {exc}")
    try:
        yield client
    finally:
        delete_prefix(client, prefix)
        client.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    opened = open_store(tmp_path / "log")
    try:
        yield opened
    finally:
        opened.close()


def epoch_event(run: str = "r1", epoch: int = 0) -> pb.EventEnvelope:
    return new_envelope(
        "EpochCompleted", f"run-{run}", pb.EpochCompleted(state=pb.SystemStatePacket(epoch=epoch)), run_id=run
    )


def telemetry_event(run: str = "r1") -> pb.EventEnvelope:
    return new_envelope("TelemetryReported", f"telemetry-{run}", pb.TelemetryPacket(), run_id=run)


def policy_event(version: str = "v1") -> pb.EventEnvelope:
    return new_envelope("PolicyPublished", f"policy-{version}", pb.PolicyPublished())


def field_report_event(run: str = "r1") -> pb.EventEnvelope:
    return new_envelope("FieldReportIssued", f"report-{run}", pb.FieldReportIssued(), run_id=run)


def emergency_event(name: str = "loss_explosion") -> pb.EventEnvelope:
    return new_envelope("AlertFired", f"alert-{name}", pb.Alert(), priority=pb.MESSAGE_PRIORITY_EMERGENCY)


class ScriptReplyProxy:
    """A TCP proxy to a Redis server that interferes with the reply to the first script call (EVALSHA)
    after `arm()`: Redis runs the script, then the reply is either lost (`lose=True`: the client's
    connection drops, as a reply lost under load or on the network would leave it) or held until
    `release()`. `on_reply` is called when that reply arrives from Redis."""

    def __init__(self, port: int, on_reply: Callable[[], None] = lambda: None, lose: bool = False) -> None:
        self.upstream = port
        self.on_reply = on_reply
        self.lose = lose
        self.armed = False
        self.released = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self) -> None:
        self.armed = True

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()
        self.listener.close()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                server = socket.create_connection(("127.0.0.1", self.upstream))
                caught = threading.Event()
                threading.Thread(target=self._requests, args=(client, server, caught), daemon=True).start()
                threading.Thread(target=self._replies, args=(server, client, caught), daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket, caught: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if self.armed and b"EVALSHA" in data:
                    self.armed = False
                    caught.set()  # before Redis can answer
                server.sendall(data)

    def _replies(self, server: socket.socket, client: socket.socket, caught: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := server.recv(65536):
                if caught.is_set():
                    caught.clear()
                    self.on_reply()
                    if self.lose:
                        client.shutdown(socket.SHUT_RDWR)
                        client.close()
                        return
                    self.released.wait()
                client.sendall(data)
