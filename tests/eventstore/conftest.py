"""Fixtures of the event-store tests: a fresh store per test, for every backend."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eventstore import EventStore, open_store
from leyline import new_envelope, pb
from tests.postgres import scratch_database

BACKENDS = ["file", "postgres"]


def make_event(stream: str, note: str = "", event_id: str | None = None) -> pb.EventEnvelope:
    return new_envelope("RunStarted", stream, pb.RunStarted(run_id=note or stream), event_id=event_id)


def make_events(stream: str, count: int) -> list[pb.EventEnvelope]:
    return [make_event(stream) for _ in range(count)]


@pytest.fixture
def event() -> Callable[..., pb.EventEnvelope]:
    return make_event


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A database of its own on the shared server, dropped at the end of the session."""
    with scratch_database("esper_es") as url:
        yield url


@pytest.fixture
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., EventStore]]:
    """Opens (and reopens) the same store location; closes everything at the end."""
    opened: list[EventStore] = []
    backend = request.param
    if backend == "file":
        location: str | Path = tmp_path / "log"
    else:
        server = request.getfixturevalue("postgres_server")
        location = server
        schema = f"s_{uuid.uuid4().hex[:12]}"

    def factory(**options: object) -> EventStore:
        if backend == "postgres":
            options.setdefault("schema", schema)
        store = open_store(location, **options)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_factory" in metafunc.fixturenames:
        marks = {"postgres": [pytest.mark.postgres]}
        metafunc.parametrize(
            "store_factory",
            [pytest.param(backend, marks=marks.get(backend, [])) for backend in BACKENDS],
            indirect=True,
        )


@pytest.fixture
def store(store_factory: Callable[..., EventStore]) -> EventStore:
    return store_factory()
