"""Live subscriptions to the PostgreSQL store, by LISTEN/NOTIFY."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import psycopg

from eventstore.api import EventFilter
from eventstore.postgres.reads import head, page_query, parse
from eventstore.subscription import PollingSubscription
from leyline import pb

if TYPE_CHECKING:
    from eventstore.postgres.store import PostgresStore

MAX_WAIT_S = 1.0
STANDBY_POLL_S = 0.05
PROMOTION_CHECK_S = 1.0  # how often a subscription polling a standby asks whether it was promoted


class PostgresSubscription(PollingSubscription):
    """Live by LISTEN/NOTIFY: every append notifies the store's channel at commit, so a waiting subscriber
    wakes when there is something to read instead of polling. LISTEN is issued before the first read, so a
    notification sent between a read and the next wait is already queued and is never missed; a wait still
    ends after MAX_WAIT_S so that appends by a writer that does not notify are seen too. A hot standby
    refuses LISTEN (and no notification reaches it): there, a wait is a sleep of STANDBY_POLL_S, and every
    PROMOTION_CHECK_S the subscription asks the server again, so that once the standby is promoted it listens
    from then on (a promoted server's appends notify like any primary's)."""

    def __init__(
        self, store: PostgresStore, from_position: int, event_filter: EventFilter, timeout: float | None
    ) -> None:
        super().__init__(from_position, event_filter, timeout)
        self._store = store
        self._listener: psycopg.Connection[tuple[object, ...]] = psycopg.connect(
            store.plain_url, autocommit=True
        )
        self._listening = False
        self._asked_at = 0.0
        self._listen_unless_standby()

    def _listen_unless_standby(self) -> None:
        self._asked_at = time.monotonic()
        if self._listener.execute("SELECT pg_is_in_recovery()").fetchone() != (True,):
            self._listener.execute(f'LISTEN "{self._store.channel}"')
            self._listening = True

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
        if not self._listening and time.monotonic() - self._asked_at >= PROMOTION_CHECK_S:
            self._listen_unless_standby()
        if not self._listening:
            time.sleep(STANDBY_POLL_S if remaining is None else min(STANDBY_POLL_S, remaining))
            return
        wait = MAX_WAIT_S if remaining is None else min(MAX_WAIT_S, remaining)
        for _ in self._listener.notifies(timeout=wait, stop_after=1):
            pass

    def close(self) -> None:
        super().close()
        self._listener.close()
