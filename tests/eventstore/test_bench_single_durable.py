"""`esper bench eventstore`'s single durable appends against raw fsync: paired blocks, alternating, and the
median of the pairs' ratios with its intervals."""

from __future__ import annotations

import statistics
from pathlib import Path

from eventstore import wal
from eventstore.file import FileStore
from ops.bench import bootstrap_median_interval
from ops.bench import eventstore as bench


def test_single_durable_pairs_time_both_sides_of_every_pair(tmp_path: Path) -> None:
    events = bench.make_events(4 * 3)
    record = bytes(wal.HEADER_SIZE + len(events[0].stream.encode()) + len(events[0].SerializeToString()))
    single = bench.single_durable_pairs(tmp_path, events, record, pairs=3, per_side=3)
    assert len(single.ratios) == 3 and min(single.ratios) > 0
    assert single.ours > 0 and single.raw > 0 and single.cpu_us > 0
    (store_dir,) = tmp_path.glob("single-*")
    with FileStore(store_dir) as store:  # the warm-up block and the three counted ones, one event a call
        assert [e.event_id for e in store.read_all()] == [e.event_id for e in events]
    (raw,) = tmp_path.glob("raw-*")
    assert raw.stat().st_size == 4 * 3 * len(record)


def test_single_result_judges_the_median_ratio_and_reports_its_intervals() -> None:
    ratios = [0.90, 0.97, 1.02, 0.96, 0.99, 0.94, 1.05, 0.98, 0.93, 1.00, 0.97]
    result = bench.single_result(bench.SingleDurable(ratios, ours=240.0, raw=250.0, cpu_us=20.0))
    assert result.ratio == statistics.median(ratios) == 0.97 and result.met is True
    assert result.value == 240.0 and result.baseline == 250.0
    assert result.note is not None and "median of 11 paired block ratios" in result.note
    assert "interval [0.940, 1.000]" in result.note and "rates' ratio over all pairs 0.960" in result.note
    assert bench.single_result(bench.SingleDurable([0.9, 0.94, 0.99], 1.0, 1.0, 1.0)).met is False


def test_the_bootstrap_interval_holds_the_median_and_is_reproducible() -> None:
    values = [float(v) for v in (5, 1, 9, 3, 7, 2, 8, 4, 6, 10, 11, 0)]
    low, high = bootstrap_median_interval(values)
    assert low <= statistics.median(values) <= high and low < high
    assert (low, high) == bootstrap_median_interval(values)
    assert bootstrap_median_interval([2.0] * 5) == (2.0, 2.0)
