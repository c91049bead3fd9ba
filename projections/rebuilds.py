"""Rebuilds: refill read models from position 1, in place or blue/green (SPEC §6).

In place empties and refills the tables in one transaction (readers see the old rows until it commits).
Blue/green builds new tables batch by batch while the live ones keep serving and updating, then catches
them up and swaps them in under the checkpoint locks in one transaction.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import Column, Connection, Engine, Index, MetaData, Table, inspect, text
from sqlalchemy.exc import OperationalError

from eventstore.api import EventStore
from projections import metrics
from projections.batches import (
    DEFAULT_BATCH_SIZE,
    GREEN_SUFFIX,
    Applier,
    Progress,
    Target,
    chunks,
    commit_batch,
    engine_for,
    floors_of,
)
from projections.checkpoints import lock_checkpoints, read_checkpoints, record_stop, set_checkpoint
from projections.db import write_connection
from projections.errors import ProjectionStopped, Stop
from projections.projectors import (
    Projection,
)
from projections.runner import select
from projections.schema import projection_checkpoints

SWAP_ATTEMPTS = 200
SWAP_LOCK_TIMEOUT_MS = 200


def _rebuild_in_place(
    store: EventStore,
    engine: Engine,
    projections: Sequence[Projection],
    batch_size: int,
    progress: Progress | None,
) -> dict[str, int]:
    """Empty and refill the tables in one transaction: readers see the old rows until it commits."""
    targets = [Target.live(projection) for projection in projections]
    applier = Applier(targets, engine.dialect.name)
    stops: dict[str, Stop] = {}
    with write_connection(engine) as connection, connection.begin():
        before = lock_checkpoints(connection, applier.versions())
        for projection in projections:
            for table in projection.tables:
                connection.execute(table.delete())
        head = store.head_position()
        floors = dict.fromkeys((target.checkpoint for target in targets), 0)
        cursor = connection.connection.cursor()
        events = store.read_all(from_position=1, event_filter=applier.event_filter, to_position=head)
        for chunk in chunks(events, batch_size):
            stops.update(applier.apply(cursor, chunk, floors)[1])
            if progress is not None:
                progress(chunk[-1].global_position)
        for target in targets:
            # The head is read inside the lock, so it is never behind what the old rows had applied.
            position = max(head, before[target.checkpoint].position)
            set_checkpoint(connection, target.checkpoint, position, target.projection.version)
            if target.checkpoint in stops:
                record_stop(connection, target.checkpoint, stops[target.checkpoint])
    for target in targets:
        metrics.STOPPED.labels(target.projection.name).set(target.checkpoint in stops)
    if stops:
        # Committed: each stopped projection holds its rows up to the event it cannot apply.
        raise ProjectionStopped(stops)
    return dict.fromkeys((projection.name for projection in projections), head)


def _green_table(table: Table, metadata: MetaData, order: Sequence[str]) -> Table:
    """The new table of a blue/green rebuild: the same columns, key and indexes (the indexes under suffixed
    names, index names being global; the swap puts the live names in their place). Without them, the
    rollback statements applied during the build scan whole tables. The columns come in `order`, the
    live table's: a migration that adds a column puts it last, wherever the model lists it, and the
    swapped-in table must look like the migrated one."""
    rank = {name: index for index, name in enumerate(order)}
    columns = [
        Column(
            column.name,
            column.type,
            primary_key=column.primary_key,
            nullable=column.nullable,
            autoincrement=False,
        )
        for column in sorted(table.columns, key=lambda column: rank.get(column.name, len(rank)))
    ]
    green = Table(table.name + GREEN_SUFFIX, metadata, *columns)
    for index in table.indexes:
        Index(str(index.name) + GREEN_SUFFIX, *(green.c[column.name] for column in index.columns))
    return green


def _live_names(stops: Mapping[str, Stop]) -> dict[str, Stop]:
    """Stops keyed by the new tables' checkpoints, keyed by their projections' names instead."""
    return {name.removesuffix(GREEN_SUFFIX): stop for name, stop in stops.items()}


def _lock_not_available(exc: OperationalError) -> bool:
    return getattr(exc.orig, "sqlstate", None) == "55P03"


def _swap(
    connection: Connection, store: EventStore, applier: Applier, projections: Sequence[Projection]
) -> int:
    """Catch the new tables up, put them in place of the live ones, move the checkpoints; returns the head."""
    targets = applier.targets
    if connection.dialect.name != "sqlite":
        # Take every table's lock at once, giving up quickly: a reader holding one table while waiting for
        # another would otherwise deadlock with the swap, and the database could pick the reader as victim.
        # lock_timeout is below PostgreSQL's deadlock_timeout (1 s), so the swap always yields first.
        names = [t.name for p in projections for t in p.tables]
        tables = ", ".join([*names, *(name + GREEN_SUFFIX for name in names)])
        connection.execute(text(f"SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT_MS}ms'"))
        connection.execute(text(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE"))
    # Lock the live checkpoints too before reading the head: no incremental runner can commit past it until
    # the swap is done, so the new tables catch up with everything the old ones had.
    locked = lock_checkpoints(connection, {**applier.versions(), **{p.name: p.version for p in projections}})
    floors = floors_of({target.checkpoint: locked[target.checkpoint] for target in targets})
    live = {projection.name: locked[projection.name].position for projection in projections}
    final_head = max(store.head_position(), *live.values())
    late = store.read_all(
        from_position=min(floors.values()) + 1, event_filter=applier.event_filter, to_position=final_head
    )
    stops = applier.apply(connection.connection.cursor(), list(late), floors)[1]
    if stops:
        raise ProjectionStopped(_live_names(stops))
    for projection in projections:
        for table in projection.tables:
            connection.execute(text(f"DROP TABLE {table.name}"))
            connection.execute(text(f"ALTER TABLE {table.name}{GREEN_SUFFIX} RENAME TO {table.name}"))
            for index in table.indexes:
                connection.execute(text(f"DROP INDEX {index.name}{GREEN_SUFFIX}"))
                index.create(connection)
        set_checkpoint(connection, projection.name, final_head, projection.version)
    connection.execute(
        projection_checkpoints.delete().where(
            projection_checkpoints.c.name.in_([target.checkpoint for target in targets])
        )
    )
    return final_head


def _rebuild_blue_green(
    store: EventStore,
    engine: Engine,
    projections: Sequence[Projection],
    batch_size: int,
    progress: Progress | None,
) -> dict[str, int]:
    """Build into new tables while the live ones keep serving (and updating), then swap in one transaction."""
    targets = [Target.green(projection) for projection in projections]
    applier = Applier(targets, engine.dialect.name)
    green = MetaData()
    with write_connection(engine) as connection, connection.begin():
        inspector = inspect(connection)
        for projection in projections:
            for table in projection.tables:
                _green_table(table, green, [column["name"] for column in inspector.get_columns(table.name)])
        green.drop_all(connection)
        green.create_all(connection)
        connection.execute(
            projection_checkpoints.delete().where(
                projection_checkpoints.c.name.in_([target.checkpoint for target in targets])
            )
        )
    head = store.head_position()
    events = store.read_all(from_position=1, event_filter=applier.event_filter, to_position=head)
    for chunk in chunks(events, batch_size):
        commit_batch(engine, applier, chunk, chunk[-1].global_position)
        if progress is not None:
            progress(chunk[-1].global_position)
    with engine.connect() as connection:
        built = read_checkpoints(connection, [target.checkpoint for target in targets])
    stops = {name: checkpoint.stop for name, checkpoint in built.items() if checkpoint.stop is not None}
    if stops:
        # The live tables stay as they are; the new ones are dropped rather than swapped in incomplete.
        with write_connection(engine) as connection, connection.begin():
            green.drop_all(connection)
            connection.execute(
                projection_checkpoints.delete().where(projection_checkpoints.c.name.in_(list(built)))
            )
        raise ProjectionStopped(_live_names(stops))
    for attempt in range(SWAP_ATTEMPTS):
        try:
            with write_connection(engine) as connection, connection.begin():
                final_head = _swap(connection, store, applier, projections)
            break
        except OperationalError as exc:
            if not _lock_not_available(exc) or attempt == SWAP_ATTEMPTS - 1:
                raise
            time.sleep(min(1.0, 0.05 * (attempt + 1)))
    for projection in projections:
        metrics.STOPPED.labels(projection.name).set(0)
    return dict.fromkeys((projection.name for projection in projections), final_head)


def rebuild(
    store: EventStore,
    db: Engine | str,
    names: Iterable[str] | None = None,
    *,
    blue_green: bool = False,
    projections: Sequence[Projection] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Rebuild the named projections from position 1; returns each one's checkpoint afterwards.

    Raises ProjectionStopped where a projection cannot apply an event: in place, that projection is left
    stopped just below it (the others are rebuilt); blue/green, nothing is swapped in.
    """
    with engine_for(db) as engine:
        chosen = select(names, projections)
        if not chosen:
            return {}
        started = time.perf_counter()
        if blue_green:
            result = _rebuild_blue_green(store, engine, chosen, batch_size, progress)
        else:
            result = _rebuild_in_place(store, engine, chosen, batch_size, progress)
        metrics.REBUILD_SECONDS.labels("blue_green" if blue_green else "in_place").observe(
            time.perf_counter() - started
        )
        return result
