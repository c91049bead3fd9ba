"""The PostgreSQL backend (SQLAlchemy 2 Core over psycopg 3), with the same contract as the file store.

Gap-free, commit-ordered positions under concurrent writers (several processes or hosts): an append is one
call of a server-side procedure (one round trip). It takes the store's append lock (an advisory lock),
assigns positions after the head, inserts the events, advances the head and commits, holding the lock
until the commit is flushed.
So positions are handed out in commit order and a reader that sees position N has also been able to see
every position below N. (A sequence would hand out ids at insert and make them visible at commit, letting
a subscriber skip a late committer.) Readers never block writers: they read the head row without
locking, then events up to that head. Live subscribers LISTEN on `<schema>_appended`, which every
append NOTIFYs at commit.

Modules: store (the EventStore façade, snapshots), tables, appender (the client side of an append),
append_sql (its server side), arrays (binary array parameters), reads, subscription.
"""

from eventstore.postgres.store import BACKEND, PostgresStore
from eventstore.postgres.subscription import PostgresSubscription
from eventstore.postgres.tables import engine_url, libpq_url

__all__ = ["BACKEND", "PostgresStore", "PostgresSubscription", "engine_url", "libpq_url"]
