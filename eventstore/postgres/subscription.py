"""Live subscriptions to the PostgreSQL store, by LISTEN/NOTIFY."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg

from eventstore.api import EventFilter
from eventstore.postgres.reads import head, page_query, parse
from eventstore.subscription import PollingSubscription
from leyline import pb

if TYPE_CHECKING:
    from eventstore.postgres.store import PostgresStore

MAX_WAIT_S = 1.0


class PostgresSubscription(PollingSubscription):
    """Live by LISTEN/NOTIFY: every append notifies the store's channel at commit, so a waiting subscriber
    wakes when there is something to read instead of polling. LISTEN is issued before the first read, so a
    notification sent between a read and the next wait is already queued and is never missed; a wait still
    ends after MAX_WAIT_S so that appends by a writer that does not notify are seen too."""

    def __init__(
        self, store: PostgresStore, from_position: int, event_filter: EventFilter, timeout: float | None
    ) -> None:
        super().__init__(from_position, event_filter, timeout)
        self._store = store
        self._listener = psycopg.connect(store.plain_url, autocommit=True)
        self._listener.execute(f'LISTEN "{store.channel}"')

    def _fetch(self, max_events: int) -> list[pb.EventEnvelope] | None:
        store = self._store
        with store.engine.connect() as connection:
            last = head(store.tables, connection)
            if last < self._next:
                return None
            query = page_query(store.tables, self._next, last, self._filter, max_events)
            rows = connection.execute(query).all()
        self._next = rows[-1][0] + 1 if len(rows) == max_events else last + 1
        return [parse(data) for _, data in rows]

    def _wait(self, remaining: float | None) -> None:
        wait = MAX_WAIT_S if remaining is None else min(MAX_WAIT_S, remaining)
        for _ in self._listener.notifies(timeout=wait, stop_after=1):
            pass

    def close(self) -> None:
        super().close()
        self._listener.close()
