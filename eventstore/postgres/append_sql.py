"""The server side of a PostgreSQL append: one procedure, called once per append (one round trip), and
the unlogged tables through which concurrent appends share one commit (see eventstore.postgres).

The procedure: an append that gets the store's ordering lock at once numbers, inserts and commits its own
batch, with any batches left waiting. One that finds the lock taken stores its batch in `pending` (an
unlogged table: that commit has no WAL to flush) and waits: on its row, if a lock holder has taken it (the
holder keeps the rows it took locked until its commit is flushed, so all the appends it took wake together
and find their outcomes in `outcomes`), else for the lock, after which it either finds its outcome or
numbers every batch still pending itself, its own among them. The lock holder
also locks the head row, so that an append by the function of the previous version waits for it.

Numbering one batch (`sequence_batch`): find each event_id already stored (idempotent appends: a retried
event keeps its position) and number the new ones after the head; check the expected versions (the rule
of eventstore.api.Expected.check; a conflict writes nothing and comes back as the stream and its actual
version); insert the new events stamped with stream version and position (eventstore.wal.stamp, byte for
byte) and advance the streams. The head advances, and live subscribers are notified (PostgreSQL tells them
at commit), once per numbering transaction.

Every look-up in the log is one index probe per event of the batch, written as a correlated scalar
subquery, which the planner cannot turn into a join: a join over `events` may be planned as a hash join
over a sequential scan of the whole table (a plan cached by PL/pgSQL when the table was small keeps doing
so), which made each append cost O(log size) (version 1 of this function did: three scans of the table
per append). The streams' new versions come from the inserted rows (RETURNING), not from reading the
table back. A batch left pending and never collected (its client died while waiting) is numbered by the
next append, like any append whose client dies before the reply; its outcome row stays behind.
A batch the server cannot store (a value over an index's size limit) fails its own append alone: the
lock holder numbers the batches it took again, each in a subtransaction, and hands that one its error.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

APPEND_FUNCTION = "append_events_v6"
LOCK_CLASS = 0x45535052  # "ESPR": the advisory lock that orders appends, with the schema's hash
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

CREATE UNLOGGED TABLE IF NOT EXISTS "{schema}".pending (
    batch bigint PRIMARY KEY, ids text[] NOT NULL, streams text[] NOT NULL, categories text[] NOT NULL,
    types text[] NOT NULL, data bytea[] NOT NULL, expect_streams text[] NOT NULL,
    expect_kinds text[] NOT NULL,
    expect_versions bigint[] NOT NULL, ordinals bigint[]
) WITH (toast_tuple_target = 8160);
ALTER TABLE "{schema}".pending ALTER COLUMN data SET STORAGE EXTERNAL;
ALTER TABLE "{schema}".pending ADD COLUMN IF NOT EXISTS ordinals bigint[];

CREATE UNLOGGED TABLE IF NOT EXISTS "{schema}".outcomes (
    batch bigint PRIMARY KEY, positions bigint[], inserted int NOT NULL, conflict_stream text,
    conflict_actual bigint
);
ALTER TABLE "{schema}".outcomes ADD COLUMN IF NOT EXISTS error_state text;
ALTER TABLE "{schema}".outcomes ADD COLUMN IF NOT EXISTS error_message text;

-- one batch, numbered after v_head, as though appended alone; a failed expectation writes nothing and
-- comes back as conflict_stream and conflict_actual
CREATE OR REPLACE FUNCTION "{schema}".sequence_batch(
    v_head bigint, p_ids text[], p_streams text[], p_categories text[], p_types text[], p_data bytea[],
    p_expect_streams text[], p_expect_kinds text[], p_expect_versions bigint[], p_ordinals bigint[],
    OUT positions bigint[], OUT inserted int, OUT conflict_stream text, OUT conflict_actual bigint)
LANGUAGE plpgsql AS $sequence$
DECLARE
    v_actual bigint;
    v_fresh boolean := p_ordinals IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM unnest(p_ids) AS t(event_id)
        WHERE (SELECT e.position FROM "{schema}".events e WHERE e.event_id = t.event_id) IS NOT NULL);
BEGIN
    IF v_fresh THEN
        inserted := cardinality(p_ids);
    ELSE
        -- a stored event keeps its position; a new one gets the next free one, by its first occurrence
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
            RETURN;
        END IF;
    END IF;
    FOR i IN 1 .. coalesce(array_length(p_expect_streams, 1), 0) LOOP
        SELECT coalesce(max(s.version), 0) INTO v_actual
            FROM "{schema}".streams s WHERE s.stream = p_expect_streams[i];
        IF NOT (p_expect_kinds[i] = 'any'
                OR (p_expect_kinds[i] = 'no_stream' AND v_actual = 0)
                OR (p_expect_kinds[i] = 'exists' AND v_actual > 0)
                OR (p_expect_kinds[i] = 'exact' AND v_actual = p_expect_versions[i])) THEN
            positions := NULL;
            inserted := 0;
            conflict_stream := p_expect_streams[i];
            conflict_actual := v_actual;
            RETURN;
        END IF;
    END LOOP;
    IF v_fresh THEN
        -- the common case, every event new and none repeated: position and stream version by ordinal
        positions := ARRAY(SELECT generate_series(v_head + 1, v_head + inserted));
        WITH stored AS (
            INSERT INTO "{schema}".events
                (position, event_id, stream, stream_version, category, event_type, data)
            SELECT v_head + t.n, t.event_id, t.stream, t.version, t.category, t.event_type,
                   t.data || '\\x20'::bytea || "{schema}".varint(t.version)
                          || '\\x28'::bytea || "{schema}".varint(v_head + t.n)
            FROM (SELECT u.*,
                         coalesce((SELECT s.version FROM "{schema}".streams s WHERE s.stream = u.stream), 0)
                             + u.ordinal AS version
                  FROM unnest(p_ids, p_streams, p_categories, p_types, p_data, p_ordinals)
                      WITH ORDINALITY AS u(event_id, stream, category, event_type, data, ordinal, n)
                  OFFSET 0) t
            RETURNING stream, stream_version
        )
        INSERT INTO "{schema}".streams AS s (stream, version)
            SELECT stream, max(stream_version) FROM stored GROUP BY stream
            ON CONFLICT (stream) DO UPDATE SET version = excluded.version;
        RETURN;
    END IF;
    WITH input AS (
        SELECT t.*, row_number() OVER (PARTITION BY t.position ORDER BY t.n) AS occurrence
        FROM unnest(p_ids, p_streams, p_categories, p_types, p_data, positions)
            WITH ORDINALITY AS t(event_id, stream, category, event_type, data, position, n)
        WHERE t.position > v_head
    ), heads AS (
        SELECT d.stream,
               coalesce((SELECT s.version FROM "{schema}".streams s WHERE s.stream = d.stream), 0)
                   AS version
        FROM (SELECT DISTINCT x.stream FROM unnest(p_streams) AS x(stream)) d
    ), fresh AS (
        SELECT i.*,
               h.version + row_number() OVER (PARTITION BY i.stream ORDER BY i.position) AS version
        FROM input i JOIN heads h ON h.stream = i.stream
        WHERE i.occurrence = 1
    ), stored AS (
        INSERT INTO "{schema}".events
            (position, event_id, stream, stream_version, category, event_type, data)
        SELECT position, event_id, stream, version, category, event_type,
               data || '\\x20'::bytea || "{schema}".varint(version)
                    || '\\x28'::bytea || "{schema}".varint(position)
        FROM fresh
        RETURNING stream, stream_version
    )
    INSERT INTO "{schema}".streams AS s (stream, version)
        SELECT stream, max(stream_version) FROM stored GROUP BY stream
        ON CONFLICT (stream) DO UPDATE SET version = excluded.version;
END
$sequence$;

CREATE OR REPLACE PROCEDURE "{schema}".{function}(
    p_ids text[], p_streams text[], p_categories text[], p_types text[], p_data bytea[],
    p_expect_streams text[], p_expect_kinds text[], p_expect_versions bigint[], p_ordinals bigint[],
    INOUT positions bigint[] DEFAULT NULL, INOUT inserted int DEFAULT NULL,
    INOUT conflict_stream text DEFAULT NULL, INOUT conflict_actual bigint DEFAULT NULL)
LANGUAGE plpgsql AS $append$
DECLARE
    v_batch bigint;
    v_head bigint;
    v_start bigint;
    v_own boolean := true;
    r record;
    o record;
    v_done bigint[] := '{{}}';
    v_error_state text;
    v_error_message text;
    v_isolating boolean := false;
BEGIN
    IF NOT pg_try_advisory_xact_lock({lock_class}, hashtext('{schema}')) THEN
        -- another append is sequencing and committing: leave this batch for whoever sequences next
        -- (perhaps this one), so that one commit, one WAL flush, carries every batch waiting by then
        v_batch := pg_current_xact_id()::text::bigint;
        INSERT INTO "{schema}".pending VALUES (v_batch, p_ids, p_streams, p_categories, p_types, p_data,
            p_expect_streams, p_expect_kinds, p_expect_versions, p_ordinals);
        COMMIT;  -- an unlogged table only: nothing to flush
        -- a lock holder that has taken this batch holds its row until it has committed (and flushed): wait
        -- for that commit with every other batch it took, rather than one after another for the lock
        PERFORM 1 FROM "{schema}".pending p WHERE p.batch = v_batch FOR UPDATE;
        IF FOUND THEN
            COMMIT;  -- not taken yet: leave the row free for the next lock holder, and wait for the lock
            PERFORM pg_advisory_xact_lock({lock_class}, hashtext('{schema}'));
        END IF;
        DELETE FROM "{schema}".outcomes x WHERE x.batch = v_batch
            RETURNING x.positions, x.inserted, x.conflict_stream, x.conflict_actual, x.error_state,
                      x.error_message
            INTO positions, inserted, conflict_stream, conflict_actual, v_error_state, v_error_message;
        IF FOUND THEN
            IF v_error_state IS NOT NULL THEN
                COMMIT;  -- the outcome is taken; then fail as this batch failed, alone
                RAISE EXCEPTION USING ERRCODE = v_error_state, MESSAGE = v_error_message;
            END IF;
            RETURN;  -- numbered and committed by another append
        END IF;
        v_own := false;
    END IF;
    -- the head row lock too, so that an append by the previous version of this function waits for this one
    SELECT h.position INTO v_head FROM "{schema}".head h WHERE h.id = 1 FOR UPDATE;
    v_start := v_head;
    -- a row locked by its own append, checking whether it was taken, is left to the next lock holder
    -- every batch taken, in one subtransaction; should one fail (a stream name too long for its index,
    -- say), again with each batch in its own, so that it fails alone: left pending, it would fail every
    -- later lock holder's commit, and with it every later append
    <<taking>>
    LOOP
        BEGIN
            FOR r IN SELECT * FROM "{schema}".pending p ORDER BY p.batch FOR UPDATE SKIP LOCKED LOOP
                v_done := v_done || r.batch;
                IF v_isolating THEN
                    BEGIN
                        o := "{schema}".sequence_batch(v_head, r.ids, r.streams, r.categories, r.types,
                            r.data, r.expect_streams, r.expect_kinds, r.expect_versions, r.ordinals);
                    EXCEPTION WHEN OTHERS THEN
                        IF r.batch = v_batch THEN
                            v_error_state := SQLSTATE; v_error_message := SQLERRM;
                        ELSE
                            INSERT INTO "{schema}".outcomes (batch, inserted, error_state, error_message)
                                VALUES (r.batch, 0, SQLSTATE, SQLERRM);
                        END IF;
                        CONTINUE;
                    END;
                ELSE
                    o := "{schema}".sequence_batch(v_head, r.ids, r.streams, r.categories, r.types,
                        r.data, r.expect_streams, r.expect_kinds, r.expect_versions, r.ordinals);
                END IF;
                v_head := v_head + o.inserted;
                IF r.batch = v_batch THEN
                    positions := o.positions; inserted := o.inserted;
                    conflict_stream := o.conflict_stream; conflict_actual := o.conflict_actual;
                ELSE
                    INSERT INTO "{schema}".outcomes
                        (batch, positions, inserted, conflict_stream, conflict_actual)
                        VALUES (r.batch, o.positions, o.inserted, o.conflict_stream, o.conflict_actual);
                END IF;
            END LOOP;
            EXIT taking;
        EXCEPTION WHEN OTHERS THEN
            IF v_isolating THEN
                RAISE;
            END IF;
            v_isolating := true;
            v_head := v_start;
            v_done := '{{}}';
        END;
    END LOOP;
    IF v_own THEN
        o := "{schema}".sequence_batch(v_head, p_ids, p_streams, p_categories, p_types, p_data,
            p_expect_streams, p_expect_kinds, p_expect_versions, p_ordinals);
        v_head := v_head + o.inserted;
        positions := o.positions; inserted := o.inserted;
        conflict_stream := o.conflict_stream; conflict_actual := o.conflict_actual;
    END IF;
    IF cardinality(v_done) > 0 THEN
        DELETE FROM "{schema}".pending p WHERE p.batch = ANY (v_done);
    END IF;
    IF v_head > v_start THEN
        UPDATE "{schema}".head SET position = v_head WHERE id = 1;
        PERFORM pg_notify('{channel}', v_head::text);
    END IF;
    IF v_error_state IS NOT NULL THEN
        COMMIT;  -- the other batches taken are numbered and durable; this one failed alone
        RAISE EXCEPTION USING ERRCODE = v_error_state, MESSAGE = v_error_message;
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
        sql = _APPEND_FUNCTION_SQL.format(
            schema=schema, function=APPEND_FUNCTION, lock_class=LOCK_CLASS, channel=f"{schema}_appended"
        )
        connection.exec_driver_sql(sql)
