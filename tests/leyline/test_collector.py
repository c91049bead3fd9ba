"""leyline/collector.py: collection paused while a process starts up, what it built frozen afterwards."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from leyline import collector


@pytest.fixture
def restored() -> Iterator[None]:
    yield
    gc.unfreeze()
    gc.enable()


@pytest.mark.usefixtures("restored")
def test_start_up_pauses_collection_then_freezes_what_it_built() -> None:
    collector.pause()
    assert not gc.isenabled()
    built = [[] for _ in range(1000)]  # container objects: tracked by the collector
    frozen_before = gc.get_freeze_count()
    collector.settle()
    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen_before + len(built)


@pytest.mark.usefixtures("restored")
def test_a_start_up_that_failed_collects_again_without_freezing() -> None:
    collector.pause()
    frozen_before = gc.get_freeze_count()
    collector.resume()
    assert gc.isenabled() and gc.get_freeze_count() == frozen_before
