"""Projection rebuild throughput and live lag (issue 4).

- rebuild_1m_s: rebuild every read model in place from 1 M realistic events in the file store into a new
  SQLite database (reading, decoding, projecting, committing); rebuild_eps is the same as events/s.
- naive_rebuild_eps: the same projectors, the same store and database, one transaction (and checkpoint)
  per event, measured on a prefix of the same log beside it.
- incremental_lag_p95_ms: a writer appends the log's continuation in small batches (about 2,000
  events/s) while a runner follows the store; lag is from the append's return to the commit of the batch
  that applied the event.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

from eventstore import EventStore, open_store
from leyline import pb
from leyline.datadir import DataDir
from ops.bench import BenchOptions, Result, percentile
from ops.bench._workload import realistic_log
from projections import apply_batch, follow, rebuild
from projections.db import open_db

DESCRIPTION = "projection rebuild of 1 M events, one-transaction-per-event baseline, live lag under appends"
REBUILD_BUDGET_S = 20.0
LAG_BUDGET_MS = 100.0
APPEND_BATCH = 1000


def _fill(store: EventStore, events: int, options: BenchOptions) -> None:
    batch: list[pb.EventEnvelope] = []
    for envelope in realistic_log(events, seed=1):
        envelope.global_position = 0
        batch.append(envelope)
        if len(batch) == APPEND_BATCH:
            store.append(batch)
            batch = []
            if store.head_position() % 100_000 == 0:
                options.progress(f"appended {store.head_position():,} events")
    if batch:
        store.append(batch)


def _naive_eps(store: EventStore, url: str, events: int) -> float:
    engine = open_db(url)
    prefix = list(store.read_all(1, to_position=events))
    started = time.perf_counter()
    for envelope in prefix:
        apply_batch(engine, [envelope])
    elapsed = time.perf_counter() - started
    engine.dispose()
    return len(prefix) / elapsed


def _lag(store: EventStore, url: str, events: int, rate: float) -> list[float]:
    """Lags in ms of `events` appended at about `rate` events/s while a runner follows."""
    engine = open_db(url)
    appended_at: dict[int, int] = {}
    lags: list[float] = []
    stop = threading.Event()

    def on_batch(batch: list[pb.EventEnvelope]) -> None:
        now = time.perf_counter_ns()
        lags.extend(
            (now - appended_at[e.global_position]) / 1e6 for e in batch if e.global_position in appended_at
        )

    follower = threading.Thread(target=follow, args=(store, engine, stop), kwargs={"on_batch": on_batch})
    follower.start()
    head = store.head_position()
    continuation = list(realistic_log(events, seed=2, first_position=head + 1))
    batch_size = 20
    interval = batch_size / rate
    next_at = time.perf_counter()
    for start in range(0, len(continuation), batch_size):
        batch = continuation[start : start + batch_size]
        for envelope in batch:
            envelope.global_position = 0
            envelope.occurred_at_ns = time.time_ns()
        positions = store.append(batch)
        now = time.perf_counter_ns()
        for position in positions:
            appended_at[position] = now
        next_at += interval
        time.sleep(max(0.0, next_at - time.perf_counter()))
    deadline = time.monotonic() + 30
    while len(lags) < len(appended_at) * 0.9 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    stop.set()
    follower.join()
    engine.dispose()
    return lags


def run(options: BenchOptions) -> list[Result]:
    events = 100_000 if options.quick else 1_000_000
    Path(options.data_dir).mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="bench-projections-", dir=options.data_dir))
    try:
        store = open_store(DataDir(directory).log)
        options.progress(f"writing {events:,} realistic events to the file store")
        _fill(store, events, options)
        head = store.head_position()

        options.progress(f"rebuilding every read model from {head:,} events into SQLite")
        url = f"sqlite:///{directory / 'rebuild.sqlite'}"
        engine = open_db(url)
        started = time.perf_counter()
        rebuild(store, engine, batch_size=5000)
        rebuild_s = time.perf_counter() - started
        engine.dispose()
        rebuild_eps = head / rebuild_s
        scaled_s = rebuild_s * 1_000_000 / head

        naive_events = 5_000 if options.quick else 20_000
        options.progress(f"baseline: one transaction per event over the first {naive_events:,} events")
        naive = _naive_eps(store, f"sqlite:///{directory / 'naive.sqlite'}", naive_events)

        options.progress("live lag: following the store while appending ~2,000 events/s")
        lag_events = 4_000 if options.quick else 20_000
        lags = _lag(store, url, lag_events, rate=2000.0)
        store.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    lag_p95 = percentile(lags, 0.95) if lags else float("inf")
    return [
        Result(
            "rebuild_1m_s",
            scaled_s,
            "s",
            target=f"<= {REBUILD_BUDGET_S:g} s"
            + ("" if head >= 1_000_000 else f" (scaled from {head:,} events)"),
            met=scaled_s <= REBUILD_BUDGET_S,
        ),
        Result(
            "rebuild_eps",
            rebuild_eps,
            "events/s",
            baseline_name="naive_rebuild_eps",
            baseline=naive,
            ratio=rebuild_eps / naive,
        ),
        Result("naive_rebuild_eps", naive, "events/s"),
        Result(
            "incremental_lag_p95_ms",
            lag_p95,
            "ms",
            target=f"<= {LAG_BUDGET_MS:g} ms",
            met=lag_p95 <= LAG_BUDGET_MS,
        ),
    ]
