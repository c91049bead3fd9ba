"""The PostgreSQL store's append, as one server-side function (see eventstore.postgres).

Everything an append does happens in one statement, so one round trip and one transaction.
"""

from __future__ import annotations

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection

# The function: lock the head row
# (positions are handed out in commit order), skip event_ids already stored (idempotent appends), check the
# expected versions (the rule of eventstore.api.Expected.check; a conflict raises SQLSTATE ES409 naming the
# stream, with the actual version as detail), number the new events, insert them stamped with stream
# version and position (eventstore.wal.stamp, byte for byte), advance the streams and the head, and notify
# live subscribers, whom PostgreSQL tells at commit.
APPEND_FUNCTION = "append_events_v1"
CONFLICT_STATE = "ES409"
_APPEND_FUNCTION_SQL = """
CREATE OR REPLACE FUNCTION "{schema}".varint(n bigint) RETURNS bytea
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

CREATE OR REPLACE FUNCTION "{schema}".{function}(
    p_ids text[], p_streams text[], p_categories text[], p_types text[], p_data bytea[],
    p_expect_streams text[], p_expect_kinds text[], p_expect_versions bigint[],
    OUT positions bigint[], OUT inserted int)
LANGUAGE plpgsql AS $append$
DECLARE
    v_head bigint;
    v_actual bigint;
BEGIN
    SELECT h.position INTO v_head FROM "{schema}".head h WHERE h.id = 1 FOR UPDATE;
    SELECT count(*) INTO inserted FROM (SELECT DISTINCT u.event_id FROM unnest(p_ids) AS u(event_id)) d
        WHERE NOT EXISTS (SELECT 1 FROM "{schema}".events e WHERE e.event_id = d.event_id);
    IF inserted > 0 THEN
        FOR i IN 1 .. coalesce(array_length(p_expect_streams, 1), 0) LOOP
            SELECT coalesce(max(s.version), 0) INTO v_actual
                FROM "{schema}".streams s WHERE s.stream = p_expect_streams[i];
            IF NOT (p_expect_kinds[i] = 'any'
                    OR (p_expect_kinds[i] = 'no_stream' AND v_actual = 0)
                    OR (p_expect_kinds[i] = 'exists' AND v_actual > 0)
                    OR (p_expect_kinds[i] = 'exact' AND v_actual = p_expect_versions[i])) THEN
                RAISE EXCEPTION USING ERRCODE = '{conflict}', MESSAGE = p_expect_streams[i],
                    DETAIL = v_actual::text;
            END IF;
        END LOOP;
        WITH input AS (
            SELECT t.*, row_number() OVER (PARTITION BY t.event_id ORDER BY t.n) AS occurrence
            FROM unnest(p_ids, p_streams, p_categories, p_types, p_data)
                WITH ORDINALITY AS t(event_id, stream, category, event_type, data, n)
        ), fresh AS (
            SELECT i.* FROM input i
            WHERE i.occurrence = 1
              AND NOT EXISTS (SELECT 1 FROM "{schema}".events e WHERE e.event_id = i.event_id)
        ), numbered AS (
            SELECT f.*,
                   v_head + row_number() OVER (ORDER BY f.n) AS position,
                   coalesce(s.version, 0) + row_number() OVER (PARTITION BY f.stream ORDER BY f.n)
                       AS stream_version
            FROM fresh f LEFT JOIN "{schema}".streams s ON s.stream = f.stream
        )
        INSERT INTO "{schema}".events (position, event_id, stream, stream_version, category, event_type, data)
        SELECT position, event_id, stream, stream_version, category, event_type,
               data || '\\x20'::bytea || "{schema}".varint(stream_version)
                    || '\\x28'::bytea || "{schema}".varint(position)
        FROM numbered;
        INSERT INTO "{schema}".streams AS s (stream, version)
            SELECT e.stream, max(e.stream_version) FROM "{schema}".events e
            WHERE e.position > v_head GROUP BY e.stream
            ON CONFLICT (stream) DO UPDATE SET version = excluded.version;
        UPDATE "{schema}".head SET position = v_head + inserted WHERE id = 1;
        PERFORM pg_notify('{channel}', (v_head + inserted)::text);
    END IF;
    positions := ARRAY(
        SELECT e.position FROM unnest(p_ids) WITH ORDINALITY AS u(event_id, n)
        JOIN "{schema}".events e ON e.event_id = u.event_id ORDER BY u.n);
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
            schema=schema, function=APPEND_FUNCTION, conflict=CONFLICT_STATE, channel=f"{schema}_appended"
        )
        connection.exec_driver_sql(sql)


def append_conflict(exc: psycopg.Error) -> tuple[str | None, int]:
    """(stream, actual version) of the append function's expected-version conflict, else (None, 0)."""
    if exc.sqlstate != CONFLICT_STATE:
        return None, 0
    return exc.diag.message_primary, int(exc.diag.message_detail or 0)
