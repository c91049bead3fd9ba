"""AsyncAppender: non-blocking appends on every backend, in submission order, errors on their futures."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from eventstore import NO_STREAM, EventStore, WrongExpectedVersion
from eventstore.appender import AsyncAppender
from tests.eventstore.conftest import make_event


def test_submissions_are_appended_in_order(store_factory: Callable[..., EventStore]) -> None:
    store = store_factory()
    appender = AsyncAppender(store)
    futures = [appender.submit([make_event("run-a", note=str(i))]) for i in range(30)]
    conflict = appender.submit([make_event("run-a")], {"run-a": NO_STREAM})
    appender.flush()
    assert [f.result()[0] for f in futures] == list(range(1, 31))
    with pytest.raises(WrongExpectedVersion):
        conflict.result()
    appender.close()
    assert store.stream_version("run-a") == 30
