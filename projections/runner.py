"""The projection runner: catch-up and live follow, and the projections' status (SPEC §6).

Each batch goes through `projections.batches` (its rows and checkpoints in one transaction); rebuilds,
in place and blue/green, are in `projections.rebuilds`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine

from eventstore.api import EventStore
from leyline import pb
from projections import metrics
from projections.batches import (
    DEFAULT_BATCH_SIZE,
    Applier,
    Progress,
    Target,
    chunks,
    commit_batch,
    engine_for,
    lowest_checkpoint,
)
from projections.checkpoints import read_checkpoints
from projections.errors import ProjectionError, Stop
from projections.projectors import (
    DEFAULT_FIELD_REPORT_RETENTION_S,
    Projection,
    build_projections,
)

ENV_FIELD_REPORT_RETENTION_S = "ESPER_FIELD_REPORT_RETENTION_S"


def default_projections() -> list[Projection]:
    """The read models; field-report retention from $ESPER_FIELD_REPORT_RETENTION_S (default 24 h)."""
    retention = os.environ.get(ENV_FIELD_REPORT_RETENTION_S)
    try:
        seconds = float(retention) if retention else DEFAULT_FIELD_REPORT_RETENTION_S
    except ValueError:
        raise ProjectionError(
            f"{ENV_FIELD_REPORT_RETENTION_S}={retention!r} is not a number of seconds"
        ) from None
    return build_projections(seconds)


def select(names: Iterable[str] | None, projections: Sequence[Projection] | None = None) -> list[Projection]:
    available = list(projections) if projections is not None else default_projections()
    if names is None:
        return available
    by_name = {projection.name: projection for projection in available}
    chosen = []
    for name in names:
        if name not in by_name:
            raise ProjectionError(f"unknown projection {name!r}; choose from: {', '.join(by_name)}")
        chosen.append(by_name[name])
    return chosen


def apply_batch(
    db: Engine | str,
    events: Sequence[pb.EventEnvelope],
    names: Iterable[str] | None = None,
    *,
    projections: Sequence[Projection] | None = None,
    upto: int | None = None,
) -> dict[str, int]:
    """Apply events already read from the log (in log order) as one transaction; events per projection.

    The checkpoints move to `upto` (default: the last event's position); events at or below a
    projection's checkpoint are skipped, so re-applying a batch changes nothing. A projection that cannot
    apply one of the events stops just below it (see `status`); the others are applied.
    """
    with engine_for(db) as engine:
        targets = [Target.live(projection) for projection in select(names, projections)]
        last = upto if upto is not None else (events[-1].global_position if events else 0)
        counts = commit_batch(engine, Applier(targets, engine.dialect.name), events, last)
        return {target.projection.name: counts[target.checkpoint] for target in targets}


@dataclass
class CatchUp:
    head: int
    applied: dict[str, int]  # events applied per projection
    positions: dict[str, int]  # checkpoint per projection afterwards
    # projections stopped at an event they cannot apply, and that event
    stopped: dict[str, Stop] = field(default_factory=dict)


def catch_up(
    store: EventStore,
    db: Engine | str,
    names: Iterable[str] | None = None,
    *,
    projections: Sequence[Projection] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
) -> CatchUp:
    """Bring the projections up to the head of the log, batch by batch; returns what it applied.

    A projection that cannot decode or apply an event stops just below it, and stays stopped until it is
    rebuilt; the others go on to the head. `CatchUp.stopped` names the stopped ones.
    """
    with engine_for(db) as engine:
        targets = [Target.live(projection) for projection in select(names, projections)]
        applier = Applier(targets, engine.dialect.name)
        head = store.head_position()
        start = lowest_checkpoint(engine, targets)
        applied = dict.fromkeys((target.projection.name for target in targets), 0)
        if start is not None and start < head:
            events = store.read_all(
                from_position=start + 1, event_filter=applier.event_filter, to_position=head
            )
            for chunk in chunks(events, batch_size):
                counts = commit_batch(engine, applier, chunk, chunk[-1].global_position)
                for target in targets:
                    applied[target.projection.name] += counts[target.checkpoint]
                if progress is not None:
                    progress(chunk[-1].global_position)
        # Every position up to the head has been examined, also where the last events were of no interest.
        commit_batch(engine, applier, [], head)
        with engine.connect() as connection:
            after = read_checkpoints(connection, [target.checkpoint for target in targets])
        for target in targets:
            metrics.LAG_EVENTS.labels(target.projection.name).set(head - after[target.checkpoint].position)
        positions = {name: checkpoint.position for name, checkpoint in after.items()}
        stopped = {name: checkpoint.stop for name, checkpoint in after.items() if checkpoint.stop is not None}
        return CatchUp(head, applied, positions, stopped)


def follow(
    store: EventStore,
    db: Engine | str,
    stop: threading.Event,
    *,
    names: Iterable[str] | None = None,
    projections: Sequence[Projection] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    poll_timeout: float = 0.05,
    on_batch: Callable[[list[pb.EventEnvelope]], None] | None = None,
) -> None:
    """Catch up, then apply new events as they are committed until `stop` is set."""
    with engine_for(db) as engine:
        targets = [Target.live(projection) for projection in select(names, projections)]
        applier = Applier(targets, engine.dialect.name)
        start = lowest_checkpoint(engine, targets)
        if start is None:  # every projection is stopped: nothing before the head is wanted
            start = store.head_position()
        subscription = store.subscribe(
            from_position=start + 1, event_filter=applier.event_filter, timeout=poll_timeout
        )
        try:
            while not stop.is_set():
                events = subscription.poll(timeout=poll_timeout, max_events=batch_size)
                if events:
                    commit_batch(engine, applier, events, events[-1].global_position)
                    behind = max(0, store.head_position() - events[-1].global_position)
                    for target in targets:
                        metrics.LAG_EVENTS.labels(target.projection.name).set(behind)
                    if on_batch is not None:
                        on_batch(events)
        finally:
            subscription.close()


@dataclass
class ProjectionStatus:
    name: str
    position: int
    stored_version: int | None
    code_version: int
    stop: Stop | None = None  # the event it stopped at, while it cannot apply it

    @property
    def stale(self) -> bool:
        """Built by other code than this (or never built): needs a rebuild."""
        return self.stored_version != self.code_version


def status(db: Engine | str, projections: Sequence[Projection] | None = None) -> list[ProjectionStatus]:
    with engine_for(db) as engine:
        with engine.connect() as connection:
            known = read_checkpoints(connection)
        result = []
        for projection in select(None, projections):
            checkpoint = known.get(projection.name)
            result.append(
                ProjectionStatus(
                    projection.name,
                    checkpoint.position if checkpoint else 0,
                    checkpoint.version if checkpoint else None,
                    projection.version,
                    checkpoint.stop if checkpoint else None,
                )
            )
        return result


def stale(db: Engine | str, projections: Sequence[Projection] | None = None) -> list[str]:
    """Names of the projections whose stored version differs from the code's."""
    return [entry.name for entry in status(db, projections) if entry.stale]
