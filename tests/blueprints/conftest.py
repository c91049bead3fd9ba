from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from domains.tezzeret.service import Tezzeret
from domains.tezzeret.source import SeedModuleSource
from domains.urza.library import ArtifactLibrary
from eventstore import EventStore, open_store
from leyline.datadir import DataDir


@pytest.fixture(autouse=True, scope="session")
def one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    opened = open_store(DataDir(tmp_path).log)
    yield opened
    opened.close()


@pytest.fixture
def library(tmp_path: Path, store: EventStore) -> ArtifactLibrary:
    return ArtifactLibrary(DataDir(tmp_path).artifacts, store, cache_size=4)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def tezzeret(store: EventStore, library: ArtifactLibrary, sleeps: list[float]) -> Tezzeret:
    return Tezzeret(store, library, sleep=sleeps.append)


@pytest.fixture
def source(library: ArtifactLibrary, tezzeret: Tezzeret) -> SeedModuleSource:
    return SeedModuleSource(library, tezzeret)


def events_of(store: EventStore, event_type: str) -> list[str]:
    return [envelope.stream for envelope in store.read_all() if envelope.event_type == event_type]
