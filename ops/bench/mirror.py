"""Redis mirror throughput beside raw pipelined XADD, and publish→consume latency through the Oona bus.

- `mirror_eps`: events/s of `Mirror.catch_up` over a log of mixed events (epoch packets, telemetry, field
  reports, policy and emergency events): reading the log, routing each event onto its category stream and
  its Oona queue, and the marker-checked Lua batch.
- `raw_xadd_pipelined_eps` (baseline): the same entries (same keys, same already-serialized payloads, same
  batch size) XADDed with a plain redis-py pipeline and auto ids; nothing read, checked or routed.
  The two are measured alternately, three rounds each, and the medians compared: `mirror_ratio` ≥ 0.8.
- `publish_consume_p50_ms` / `_p95_ms`: from an event's commit (`store.append` returned; the append's own
  fsync is the event store's budget) to an Oona consumer's handler seeing it, through the background
  MirrorThread (subscription → Lua batch → XREADGROUP), one event every 4 ms; target p95 < 25 ms.

Redis: $REDIS_URL or redis://127.0.0.1:6379/0, under a unique key prefix deleted afterwards.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import redis
from redis.client import Pipeline

from domains.oona.bus import Delivery, OonaConsumer
from domains.oona.fanout import OonaFanout, start_mirror
from domains.oona.routing import OonaKeys, Queue
from eventstore import EventStore, open_store
from eventstore.mirror import Mirror, category_key, connect_redis
from leyline import category_of, new_envelope, pb
from leyline.datadir import DataDir
from ops.bench import BenchOptions, Result, percentile
from ops.bench.leyline import sample_field_report, sample_system_state

DESCRIPTION = "Redis mirror events/s beside raw pipelined XADD; publish→consume latency through Oona"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
RATIO_TARGET = 0.8
LATENCY_P95_TARGET_MS = 25.0
BATCH = 500
ROUNDS = 3


def sample_events(count: int) -> list[pb.EventEnvelope]:
    """A training run's mix: mostly epoch packets and telemetry, some field reports, policy and alerts."""
    events = []
    for index in range(count):
        kind = index % 10
        if kind < 5:
            state = sample_system_state()
            state.epoch = index
            events.append(
                new_envelope("EpochCompleted", "run-rbench", pb.EpochCompleted(state=state), run_id="rbench")
            )
        elif kind < 8:
            packet = pb.TelemetryPacket()
            events.append(new_envelope("TelemetryReported", "telemetry-rbench", packet, run_id="rbench"))
        elif kind == 8:
            report = pb.FieldReportIssued(report=sample_field_report())
            events.append(new_envelope("FieldReportIssued", "report-rbench", report, run_id="rbench"))
        elif index % 20 == 9:
            events.append(new_envelope("PolicyPublished", f"policy-v{index}", pb.PolicyPublished()))
        else:
            alert = pb.Alert(name="loss_explosion", severity="critical")
            events.append(
                new_envelope(
                    "AlertFired", "alert-loss_explosion", alert, priority=pb.MESSAGE_PRIORITY_EMERGENCY
                )
            )
    return events


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])


def time_mirror(store: EventStore, client: redis.Redis, directory: Path, prefix: str) -> float:
    mirror = Mirror(
        store, client, directory, prefix=prefix, fanout=OonaFanout(OonaKeys(prefix)), batch_size=BATCH
    )
    started = time.perf_counter()
    mirrored = mirror.catch_up()
    elapsed = time.perf_counter() - started
    return mirrored / elapsed


def time_raw(client: redis.Redis, entries: list[tuple[str, dict[str, bytes | str]]]) -> float:
    started = time.perf_counter()
    for start in range(0, len(entries), BATCH):
        pipe = client.pipeline(transaction=False)
        for key, fields in entries[start : start + BATCH]:
            pipe.xadd(key, fields)  # type: ignore[arg-type]
        pipe.execute()
    return len(entries) / (time.perf_counter() - started)


def raw_entries(store: EventStore, prefix: str) -> list[tuple[str, dict[str, bytes | str]]]:
    """Exactly the entries the mirror writes: category stream and Oona queue of every event."""
    fanout = OonaFanout(OonaKeys(prefix))
    entries = []
    for envelope in store.read_all():
        fields: dict[str, bytes | str] = {
            "event_type": envelope.event_type,
            "stream": envelope.stream,
            "envelope": envelope.SerializeToString(),
        }
        for key in (category_key(prefix, category_of(envelope.stream)), *fanout.targets(envelope)):
            entries.append((key, fields))
    return entries


def measure_latency(store: EventStore, url: str, directory: Path, prefix: str, count: int) -> list[float]:
    """Milliseconds from an event's commit (append returned) to the handler seeing it, per event."""
    keys = OonaKeys(prefix)
    committed: dict[str, float] = {}
    consumed: dict[str, float] = {}
    done = threading.Event()

    def handler(delivery: Delivery, tx: Pipeline) -> None:
        consumed[delivery.envelope.event_id] = time.perf_counter()
        if len(consumed) == count:
            done.set()

    client = connect_redis(url)
    consumer = OonaConsumer(client, "bench", handler, keys=keys, queues=[Queue.EMERGENCY, Queue.NORMAL])
    consumer.ensure_groups()
    stop = threading.Event()
    worker = threading.Thread(target=consumer.run, args=(stop,), kwargs={"block_ms": 100}, daemon=True)
    mirror = start_mirror(store, url, directory, prefix=prefix, idle_timeout=0.1)
    worker.start()
    try:
        for index in range(count):
            state = sample_system_state()
            state.epoch = index
            envelope = new_envelope("EpochCompleted", "run-rlatency", pb.EpochCompleted(state=state))
            store.append([envelope])
            committed[envelope.event_id] = time.perf_counter()
            time.sleep(0.004)
        done.wait(30)
    finally:
        stop.set()
        worker.join(5)
        mirror.stop()
        client.close()
    if mirror.error is not None:
        raise mirror.error
    # a handler can run before the publisher records the commit time: that counts as no delay
    return [max(0.0, consumed[event_id] - committed[event_id]) * 1000 for event_id in consumed]


def run(options: BenchOptions) -> list[Result]:
    url = os.environ.get("REDIS_URL", DEFAULT_REDIS)
    count = 5_000 if options.quick else 40_000
    latency_count = 100 if options.quick else 500
    client = connect_redis(url)
    base = f"bench{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="esper-bench-mirror-") as temporary:
        directory = Path(temporary)
        store = open_store(DataDir(directory).log)
        try:
            options.progress(f"appending {count} events")
            events = sample_events(count)
            for start in range(0, count, 1000):
                store.append(events[start : start + 1000])
            entries = raw_entries(store, base)
            mirror_rates, raw_rates = [], []
            for round_index in range(ROUNDS):
                options.progress(f"round {round_index + 1}/{ROUNDS}: mirror, then raw XADD")
                prefix = f"{base}r{round_index}"
                try:
                    mirror_rates.append(time_mirror(store, client, directory / prefix, prefix))
                finally:
                    delete_prefix(client, prefix)
                try:
                    raw_rates.append(time_raw(client, entries))
                finally:
                    delete_prefix(client, base)
        finally:
            store.close()
        options.progress(f"publish→consume latency over {latency_count} events")
        latency_prefix = f"{base}lat"
        latency_store = open_store(directory / "latency-log")
        try:
            latencies = measure_latency(
                latency_store, url, directory / "latency", latency_prefix, latency_count
            )
        finally:
            latency_store.close()
            delete_prefix(client, latency_prefix)
            client.close()
    if len(latencies) < latency_count:
        raise RuntimeError(f"only {len(latencies)} of {latency_count} published events were consumed")
    mirror_eps = statistics.median(mirror_rates)
    raw_eps = statistics.median(raw_rates) / (len(entries) / count)  # in events: entries per event
    ratio = mirror_eps / raw_eps
    p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
    return [
        Result(
            "mirror_eps",
            mirror_eps,
            "events/s",
            baseline_name="raw_xadd_pipelined",
            baseline=raw_eps,
            ratio=ratio,
        ),
        Result("raw_xadd_pipelined_eps", raw_eps, "events/s"),
        Result("mirror_ratio", ratio, "ratio", target=f">= {RATIO_TARGET}", met=ratio >= RATIO_TARGET),
        Result("publish_consume_p50_ms", p50, "ms"),
        Result(
            "publish_consume_p95_ms",
            p95,
            "ms",
            target=f"< {LATENCY_P95_TARGET_MS:g} ms",
            met=p95 < LATENCY_P95_TARGET_MS,
        ),
    ]
