"""The PostgreSQL backend (SQLAlchemy 2 Core over psycopg 3), with the same contract as the file store.

Gap-free, commit-ordered positions under concurrent writers (several processes or hosts): an append is one
call of a server-side procedure (one round trip). Only the holder of the store's ordering lock (an advisory
lock, and the head row's lock) numbers events: it reads the head, assigns positions from it, inserts the
events, advances the head and commits, holding the lock until the commit is flushed. So positions are
handed out in commit order and a reader that sees position N has also been able to see every position
below N. (A sequence would hand out ids at insert and make them visible at commit, letting a subscriber
skip a late committer.) An append that finds the lock taken does not wait idle with its batch: it leaves
the batch in an unlogged table (a commit with nothing to flush) and waits for the lock; whoever holds it
next numbers every batch left there, in one transaction, so that concurrent appends share one commit and
one WAL flush (eventstore.postgres.append_sql). Readers never block writers: they read the head row without
locking, then events up to that head. Live subscribers LISTEN on `<schema>_appended`, which every
numbering transaction NOTIFYs at commit.

Modules: store (the EventStore façade, snapshots), tables, appender (the client side of an append),
append_sql (its server side), arrays (binary array parameters), reads, subscription.
"""

from eventstore.postgres.store import BACKEND, PostgresStore
from eventstore.postgres.subscription import PostgresSubscription
from eventstore.postgres.tables import engine_url, libpq_url

__all__ = ["BACKEND", "PostgresStore", "PostgresSubscription", "engine_url", "libpq_url"]
