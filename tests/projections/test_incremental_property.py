"""Property: incremental application in any batches, with restarts, gives exactly the rows of a rebuild."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from leyline import pb
from projections import apply_batch, build_projections, open_db
from tests.projections.helpers import dump, fresh_sqlite
from tests.projections.strategies import event_logs

DAY_S = 24 * 3600.0


def apply_incrementally(
    directory: Path, events: list[pb.EventEnvelope], cuts: list[int], restarts: set[int], retention_s: float
) -> dict[str, list[tuple[object, ...]]]:
    """Apply in the batches the cuts make, reopening the database (a restart) before the chosen batches."""
    projections = build_projections(retention_s)
    engine = fresh_sqlite(directory, "incremental.sqlite")
    bounds = sorted({0, len(events), *(cut % (len(events) + 1) for cut in cuts)})
    for number, (start, end) in enumerate(itertools.pairwise(bounds)):
        if number in restarts:
            url = engine.url.render_as_string()
            engine.dispose()
            engine = open_db(url)
        apply_batch(engine, events[start:end], projections=projections)
    rows = dump(engine, include_checkpoints=True)
    engine.dispose()
    return rows


@settings(max_examples=20, deadline=None)
@given(
    events=event_logs(),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
    restarts=st.sets(st.integers(0, 8), max_size=3),
    retention_s=st.sampled_from([DAY_S, 0.5]),
)
def test_incremental_equals_rebuild(
    events: list[pb.EventEnvelope], cuts: list[int], restarts: set[int], retention_s: float
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        incremental = apply_incrementally(Path(directory), events, cuts, restarts, retention_s)
        full = fresh_sqlite(Path(directory), "full.sqlite")
        apply_batch(full, events, projections=build_projections(retention_s))
        assert incremental == dump(full, include_checkpoints=True)
        full.dispose()


@settings(max_examples=12, deadline=None)
@given(events=event_logs(max_runs=2, max_epochs=15), replay_from=st.integers(0, 10_000))
def test_reapplying_changes_nothing(events: list[pb.EventEnvelope], replay_from: int) -> None:
    """Events at or below a checkpoint are skipped: a replayed suffix applies nothing twice."""
    with tempfile.TemporaryDirectory() as directory:
        engine = fresh_sqlite(Path(directory))
        apply_batch(engine, events)
        before = dump(engine, include_checkpoints=True)
        counts = apply_batch(engine, events[replay_from % (len(events) + 1) :])
        assert set(counts.values()) == {0}
        assert dump(engine, include_checkpoints=True) == before
        engine.dispose()
