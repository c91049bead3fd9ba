"""The server side of a PostgreSQL append: one procedure, called once per append (one round trip).

It takes the store's append lock (a transaction-level advisory lock: no row lock, no WAL record, one
queue of waiters), numbers the batch after the head, advances the head and notifies live subscribers.
The commit record is written while the lock is held, so positions are handed out in commit order, and a
transaction is visible before the next lock holder reads the head. Whether the lock is also held while
that commit is flushed depends on whether another appender is connected to the store (each appender's
connection holds a shared advisory lock for its life, eventstore.postgres.appender; the procedure tries
the exclusive one at its end):

- alone: one transaction, committed with the session's durable default; the lock goes once the commit is
  flushed (a second transaction would only cost server CPU: measured 1 writer x 10 events 2.1x -> 1.8-2.0x
  the baseline's events/s when every append took it).
- with others: the events' transaction commits without waiting for the flush (`synchronous_commit` off for
  it alone), which releases the lock at once, and a second transaction in the same CALL writes one WAL
  record (a logical message, which nothing but logical decoding reads) and commits durably: its flush
  covers the first commit, which precedes it in the WAL. The CALL returns after that flush, so an append is
  acknowledged only once durable, while the next lock holder's insert runs during this one's flush
  (measured, batches of 10 against the baseline in alternating rounds, three runs: 2 writers 1.54x ->
  1.80-2.11x, 4 writers 1.25x -> 1.66-1.90x). A crash before the flush loses a suffix of the WAL: the
  events lost are the newest positions, never a gap. They were visible meanwhile, and reads return nothing
  before it is durable (eventstore.postgres.reads).

An append whose events were all stored already ends with the same flush: what it reports may be another
appender's events not flushed yet. The second transaction takes a transaction id: with several appenders,
ids are used twice as fast (the autovacuum's anti-wraparound freezing comes round sooner).

The common batch (no event_id repeated within it, expectations met): the head advances by the batch's
size (UPDATE ... RETURNING), each event's stream version is its stream's highest stored stream_version
(one probe of the stream + stream_version index) plus the rank the client sends, and the events are
inserted stamped with stream version and position (eventstore.wal.stamp, byte for byte). An event_id
already stored fails the event_id index; the client then calls again without ranks (an empty array), and
the procedure numbers the batch the slow way: find each event_id already stored (idempotent appends: a
retried event keeps its position), number the new ones after the head, check the expected versions (the
rule of eventstore.api.Expected.check; a conflict writes nothing and comes back as the stream and its
actual version).

Every look-up in the log is one index probe, written as a correlated scalar subquery, which the planner
cannot turn into a join: a join over `events` may be planned as a hash join over a sequential scan of the
whole table. The appender's connection asks for generic plans (eventstore.postgres.appender), planned
once per session: left to choose, the server kept custom plans for the array parameters and planned every
statement again on every call (inlining `varint` each time), most of its CPU for a small batch.

Appends waiting for the lock do not share a commit (they share flushes, above). A version that let them (each
waiting batch left in an unlogged table, numbered and committed by the next lock holder together with its own)
was faster with 4 writers on a disk flushing ~200 commits/s, and 2-6x slower on a quiet one (~4,000/s): its
extra transactions and lock hand-offs cost more server CPU than the flushes it saved. A second one (the
handed-over batches numbered by their ordinals, stored uncompressed; one waiter at a time the candidate for
the lock, the others waking together when it commits) fared no better on 2 loaded cores: 1.4 batches per
commit with 4 writers x 10 events, 150-168 server CPU us/event against 87-101, slower at 2 writers.
Where the lock's time goes (auto_explain, 10 events): the insert ~200 us (~70 unnest, probe and stamp,
~125 the heap and its 5 indexes; the category and event_type indexes ~17 of it), the head ~25 us, the
lock, positions and notify under 10 us together; then the commit's flush.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

APPEND_FUNCTION = "append_events_v9"
COMMIT_THEN_FLUSH = "append_commit_then_flush_v1"
ANNOUNCE_APPENDER = "announce_appender_v1"
# the announcements' advisory lock: the two-integer key space (the append lock's key is one bigint)
ANNOUNCE_CLASS = 0x45535052
_APPEND_FUNCTION_SQL = """
CREATE OR REPLACE FUNCTION "{schema}".varint_long(n bigint) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT AS $varint$
DECLARE
    out bytea := ''::bytea;
BEGIN
    LOOP
        IF n < 128 THEN
            RETURN out || set_byte('\\x00'::bytea, 0, n::int);
        END IF;
        out := out || set_byte('\\x00'::bytea, 0, ((n & 127) | 128)::int);
        n := n >> 7;
    END LOOP;
END
$varint$;

-- one expression, which the planner inlines into the insert (no function call per event below 2^28)
CREATE OR REPLACE FUNCTION "{schema}".varint(n bigint) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $varint$
SELECT CASE
    WHEN n < 128 THEN set_byte('\\x00'::bytea, 0, n::int)
    WHEN n < 16384 THEN set_byte(set_byte('\\x0000'::bytea, 0, ((n & 127) | 128)::int), 1, (n >> 7)::int)
    WHEN n < 2097152 THEN set_byte(set_byte(set_byte('\\x000000'::bytea,
        0, ((n & 127) | 128)::int), 1, (((n >> 7) & 127) | 128)::int), 2, (n >> 14)::int)
    WHEN n < 268435456 THEN set_byte(set_byte(set_byte(set_byte('\\x00000000'::bytea,
        0, ((n & 127) | 128)::int), 1, (((n >> 7) & 127) | 128)::int), 2, (((n >> 14) & 127) | 128)::int),
        3, (n >> 21)::int)
    ELSE "{schema}".varint_long(n)
END
$varint$;

-- an appender's connection announces itself for its lifetime (shared: appenders do not wait for each
-- other; a lone append's commit holds the exclusive lock a moment, below)
CREATE OR REPLACE FUNCTION "{schema}".{announce}() RETURNS void
LANGUAGE sql AS $announce$ SELECT pg_advisory_lock_shared({announce_key}) $announce$;

-- an append's ending where other appenders are connected: commit without waiting for the flush (the
-- append lock goes), then flush
CREATE OR REPLACE PROCEDURE "{schema}".{commit_then_flush}()
LANGUAGE plpgsql AS $flush$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    COMMIT;
    PERFORM pg_logical_emit_message(true, 'esper.flush', ''::text);
END
$flush$;

CREATE OR REPLACE PROCEDURE "{schema}".{function}(
    p_ids text[], p_streams text[], p_categories text[], p_types text[], p_data bytea[],
    p_expect_streams text[], p_expect_kinds text[], p_expect_versions bigint[], p_ordinals bigint[],
    INOUT positions bigint[] DEFAULT NULL, INOUT inserted int DEFAULT NULL,
    INOUT conflict_stream text DEFAULT NULL, INOUT conflict_actual bigint DEFAULT NULL)
LANGUAGE plpgsql AS $append$
DECLARE
    v_head bigint;
    v_actual bigint;
BEGIN
    -- held until the commit: the next append reads the head after this one's commit
    PERFORM pg_advisory_xact_lock({lock_key});
    FOR i IN 1 .. coalesce(array_length(p_expect_streams, 1), 0) LOOP
        v_actual := coalesce((SELECT max(e.stream_version) FROM "{schema}".events e
                              WHERE e.stream = p_expect_streams[i]), 0);
        IF NOT (p_expect_kinds[i] = 'any'
                OR (p_expect_kinds[i] = 'no_stream' AND v_actual = 0)
                OR (p_expect_kinds[i] = 'exists' AND v_actual > 0)
                OR (p_expect_kinds[i] = 'exact' AND v_actual = p_expect_versions[i])) THEN
            conflict_stream := p_expect_streams[i];
            conflict_actual := v_actual;
            EXIT;
        END IF;
    END LOOP;
    IF cardinality(p_ordinals) > 0 AND conflict_stream IS NULL THEN
        -- every event new and none repeated (a stored one fails the event_id index: the client calls
        -- again without ordinals): position and stream version by ordinal
        inserted := cardinality(p_ids);
        UPDATE "{schema}".head SET position = position + inserted WHERE id = 1
            RETURNING position - inserted INTO v_head;
        positions := ARRAY(SELECT generate_series(v_head + 1, v_head + inserted));
        INSERT INTO "{schema}".events
            (position, event_id, stream, stream_version, category, event_type, data)
        SELECT v_head + t.n, t.event_id, t.stream, t.version, t.category, t.event_type,
               t.data || '\\x20'::bytea || "{schema}".varint(t.version)
                      || '\\x28'::bytea || "{schema}".varint(v_head + t.n)
        -- the first event's stream is probed once (an init plan), any other stream once per event
        FROM (SELECT u.*,
                     coalesce(CASE WHEN u.stream = p_streams[1]
                                   THEN (SELECT max(e.stream_version) FROM "{schema}".events e
                                         WHERE e.stream = p_streams[1])
                                   ELSE (SELECT max(e.stream_version) FROM "{schema}".events e
                                         WHERE e.stream = u.stream) END, 0) + u.ordinal AS version
              FROM unnest(p_ids, p_streams, p_categories, p_types, p_data, p_ordinals)
                  WITH ORDINALITY AS u(event_id, stream, category, event_type, data, ordinal, n)
              OFFSET 0) t;
        PERFORM pg_notify('{channel}', (v_head + inserted)::text);
        IF NOT pg_try_advisory_xact_lock({announce_key}) THEN  -- another appender is connected
            CALL "{schema}".{commit_then_flush}();
        END IF;
        RETURN;
    END IF;
    -- a stored event keeps its position; a new one gets the next free one, by its first occurrence
    SELECT h.position INTO v_head FROM "{schema}".head h WHERE h.id = 1;
    SELECT array_agg(coalesce(k.stored, v_head + k.fresh_rank) ORDER BY k.n),
           coalesce(max(k.fresh_rank) FILTER (WHERE k.stored IS NULL), 0)
        INTO positions, inserted
        FROM (SELECT u.n, u.stored,
                     dense_rank() OVER (PARTITION BY u.stored IS NULL ORDER BY u.first) AS fresh_rank
              FROM (SELECT t.n, min(t.n) OVER (PARTITION BY t.event_id) AS first,
                           (SELECT e.position FROM "{schema}".events e WHERE e.event_id = t.event_id)
                               AS stored
                    FROM unnest(p_ids) WITH ORDINALITY AS t(event_id, n)) u) k;
    IF inserted = 0 THEN
        conflict_stream := NULL;
        conflict_actual := NULL;
        -- every event stored already, maybe by another appender and not flushed yet: flushed when returned
        CALL "{schema}".{commit_then_flush}();
        RETURN;
    END IF;
    IF conflict_stream IS NOT NULL THEN
        positions := NULL;
        inserted := 0;
        RETURN;
    END IF;
    WITH input AS (
        SELECT t.*, row_number() OVER (PARTITION BY t.position ORDER BY t.n) AS occurrence
        FROM unnest(p_ids, p_streams, p_categories, p_types, p_data, positions)
            WITH ORDINALITY AS t(event_id, stream, category, event_type, data, position, n)
        WHERE t.position > v_head
    ), heads AS (
        SELECT d.stream,
               coalesce((SELECT max(e.stream_version) FROM "{schema}".events e WHERE e.stream = d.stream),
                        0) AS version
        FROM (SELECT DISTINCT x.stream FROM unnest(p_streams) AS x(stream)) d
    ), fresh AS (
        SELECT i.*,
               h.version + row_number() OVER (PARTITION BY i.stream ORDER BY i.position) AS version
        FROM input i JOIN heads h ON h.stream = i.stream
        WHERE i.occurrence = 1
    )
    INSERT INTO "{schema}".events
        (position, event_id, stream, stream_version, category, event_type, data)
    SELECT position, event_id, stream, version, category, event_type,
           data || '\\x20'::bytea || "{schema}".varint(version)
                || '\\x28'::bytea || "{schema}".varint(position)
    FROM fresh;
    UPDATE "{schema}".head SET position = v_head + inserted WHERE id = 1;
    PERFORM pg_notify('{channel}', (v_head + inserted)::text);
    IF NOT pg_try_advisory_xact_lock({announce_key}) THEN
        CALL "{schema}".{commit_then_flush}();
    END IF;
END
$append$;
"""


def install_append_function(connection: Connection, schema: str) -> None:
    # serialised: concurrent CREATE OR REPLACE FUNCTION of one name fails with "tuple concurrently updated"
    connection.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:schema))"), {"schema": schema})
    exists = connection.execute(
        sa.text(
            "SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = :schema AND p.proname = :function"
        ),
        {"schema": schema, "function": APPEND_FUNCTION},
    ).first()
    if exists is None:
        # the appends' lock: one key per store, the head table's oid
        lock_key = connection.execute(
            sa.text("SELECT CAST(CAST(:head AS regclass) AS oid)"), {"head": f'"{schema}".head'}
        ).scalar_one()
        sql = _APPEND_FUNCTION_SQL.format(
            schema=schema,
            function=APPEND_FUNCTION,
            commit_then_flush=COMMIT_THEN_FLUSH,
            announce=ANNOUNCE_APPENDER,
            announce_key=f"{lock_key & 0x7FFFFFFF}, {ANNOUNCE_CLASS}",
            channel=f"{schema}_appended",
            lock_key=lock_key,
        )
        connection.exec_driver_sql(sql)
