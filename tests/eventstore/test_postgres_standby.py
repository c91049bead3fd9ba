"""Reading the PostgreSQL store from a hot standby (read-only stores: replay, audit, serve on a replica).

A standby refuses what the primary's reads use to make sure they return only durable events
(`pg_current_wal_insert_lsn`, a flushing transaction, LISTEN); it shows only WAL its primary has flushed, so
reads there skip that check and subscriptions poll until it is promoted. The shared server cannot be given
a standby, so this module starts a primary and a streaming standby of its own (initdb and pg_basebackup,
as the `postgres` user, in a temporary directory, on free ports) and stops both at the end."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import psycopg
import pytest

from eventstore.api import Subscription
from eventstore.postgres import PostgresStore
from eventstore.postgres.subscription import PROMOTION_CHECK_S
from leyline import pb
from ops.ports import free_port
from tests.eventstore.conftest import make_events

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

REPLAY_TIMEOUT_S = 60.0


class Pair(NamedTuple):
    primary: str
    standby: str
    standby_data: Path  # the standby's data directory, for pg_ctl


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(path.split("/")[4]))
    if not found:
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql (Debian's postgresql package)")
    return Path(found[-1]).parent


def _as_postgres(*command: str | Path) -> list[str]:
    """The command run as the `postgres` user when this process is root (the server refuses root)."""
    arguments = [str(part) for part in command]
    return ["runuser", "-u", "postgres", "--", *arguments] if os.geteuid() == 0 else arguments


def _run(*command: str | Path) -> None:
    done = subprocess.run(_as_postgres(*command), capture_output=True, text=True, timeout=120)
    if done.returncode:
        pytest.fail(f"{Path(command[0]).name} exited {done.returncode}: {done.stderr.strip()}")


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with started_pair() as started:
        yield started


@contextmanager
def started_pair() -> Iterator[Pair]:
    binaries = _bin_dir()
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("no `postgres` user to run a private PostgreSQL server as")
    root = Path(tempfile.mkdtemp(prefix="esper-standby-"))
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    primary, standby = root / "primary", root / "standby"
    primary_port, standby_port = free_port(), free_port()
    started: list[Path] = []
    try:
        _run(binaries / "initdb", "-D", primary, "-U", "postgres", "-A", "trust", "--no-sync")
        _append_settings(
            primary,
            f"listen_addresses = '127.0.0.1'\nunix_socket_directories = '{root}'\n"
            f"max_connections = 20\nport = {primary_port}\n",
        )
        started.append(primary)  # stopped at the end even if its start fails half-way
        _run(binaries / "pg_ctl", "-D", primary, "-l", root / "primary.log", "-w", "-t", "60", "start")
        _run(
            binaries / "pg_basebackup",
            *("-h", "127.0.0.1", "-p", str(primary_port), "-U", "postgres"),
            *("-D", standby, "-X", "stream", "-R", "-c", "fast", "--no-sync"),
        )
        _append_settings(standby, f"port = {standby_port}\nhot_standby = on\n")
        started.append(standby)
        _run(binaries / "pg_ctl", "-D", standby, "-l", root / "standby.log", "-w", "-t", "60", "start")
        yield Pair(
            f"postgresql://postgres@127.0.0.1:{primary_port}/postgres",
            f"postgresql://postgres@127.0.0.1:{standby_port}/postgres",
            standby,
        )
    finally:
        for directory in reversed(started):
            subprocess.run(
                _as_postgres(binaries / "pg_ctl", "-D", directory, "-m", "immediate", "stop"),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)


def _append_settings(data_directory: Path, lines: str) -> None:
    with (data_directory / "postgresql.conf").open("a") as conf:
        conf.write(lines)


def _replayed(pair: Pair) -> None:
    """Wait until the standby has replayed everything the primary has flushed."""
    with psycopg.connect(pair.primary, autocommit=True) as primary:
        row = primary.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()
    assert row is not None
    deadline = time.monotonic() + REPLAY_TIMEOUT_S
    with psycopg.connect(pair.standby, autocommit=True) as standby:
        while standby.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", row).fetchone() != (True,):
            assert time.monotonic() < deadline, f"the standby did not replay up to {row[0]}"
            time.sleep(0.05)


def test_reads_on_a_standby_return_what_the_primary_committed(pair: Pair) -> None:
    schema = f"s_{uuid.uuid4().hex[:12]}"
    first, second = f"run-{uuid.uuid4().hex}", f"run-{uuid.uuid4().hex}"
    with PostgresStore(pair.primary, schema=schema) as writer:
        written = make_events(first, 3) + make_events(second, 2)
        writer.append(written[:3])
        writer.append(written[3:])
    _replayed(pair)
    with PostgresStore(pair.standby, schema=schema, read_only=True) as reader:
        with psycopg.connect(pair.standby) as check:
            assert check.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        assert reader.head_position() == 5
        assert [event.event_id for event in reader.read_all()] == [event.event_id for event in written]
        assert [event.event_id for event in reader.read_stream(second)] == [e.event_id for e in written[3:]]
        assert reader.stream_version(first) == 3


def _polled(subscription: Subscription, count: int) -> list[pb.EventEnvelope]:
    """What the subscription returns until it has `count` events (or REPLAY_TIMEOUT_S has passed)."""
    seen: list[pb.EventEnvelope] = []
    deadline = time.monotonic() + REPLAY_TIMEOUT_S
    while len(seen) < count and time.monotonic() < deadline:
        seen.extend(subscription.poll(timeout=1.0))
    return seen


@contextmanager
def _standby_subscription(pair: Pair, stream: str) -> Iterator[tuple[str, PostgresStore, Subscription]]:
    """A new schema with two events on `stream`, and a subscription on the standby that has read them:
    (the schema, the standby's read-only store, the subscription)."""
    schema = f"s_{uuid.uuid4().hex[:12]}"
    with PostgresStore(pair.primary, schema=schema) as writer:
        writer.append(make_events(stream, 2))
    _replayed(pair)
    with PostgresStore(pair.standby, schema=schema, read_only=True) as reader:
        subscription = reader.subscribe(from_position=1, timeout=5.0)
        try:
            assert [event.global_position for event in subscription.poll()] == [1, 2]
            yield schema, reader, subscription
        finally:
            subscription.close()


def test_a_subscription_on_a_standby_sees_later_appends(pair: Pair) -> None:
    stream = f"run-{uuid.uuid4().hex}"
    with _standby_subscription(pair, stream) as (schema, _, subscription):
        with PostgresStore(pair.primary, schema=schema) as writer:
            later = make_events(stream, 2)
            writer.append(later)
        assert [event.event_id for event in _polled(subscription, 2)] == [e.event_id for e in later]


def _listening(url: str, channel: str) -> bool:
    """Whether a session on the server has LISTEN on `channel` as its last statement."""
    with psycopg.connect(url, autocommit=True) as check:
        row = check.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query = %s", [f'LISTEN "{channel}"']
        ).fetchone()
    return row is not None and row[0] > 0


def test_a_subscription_on_a_promoted_standby_listens_from_then_on() -> None:
    stream = f"run-{uuid.uuid4().hex}"
    # its own pair: promoting the module's standby would end it for the other tests
    with started_pair() as fresh, _standby_subscription(fresh, stream) as (schema, reader, subscription):
        assert not _listening(fresh.standby, reader.channel)
        _run(_bin_dir() / "pg_ctl", "-D", fresh.standby_data, "-w", "-t", "60", "promote")
        with PostgresStore(fresh.standby, schema=schema) as promoted:
            later = make_events(stream, 2)
            promoted.append(later)
        assert [event.event_id for event in _polled(subscription, 2)] == [e.event_id for e in later]
        # nothing more to read: waiting past the promotion check, the subscription listens
        assert subscription.poll(timeout=PROMOTION_CHECK_S + 0.5) == []
        assert _listening(fresh.standby, reader.channel)
