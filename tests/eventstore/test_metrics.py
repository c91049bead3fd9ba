"""The store's Prometheus metrics move when it works (SPEC §11: append latency, fsync batch size, bytes
written, recovery duration)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY

from eventstore.file import FileStore
from tests.eventstore.conftest import make_event


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_file_store_metrics(tmp_path: Path) -> None:
    before = {
        "latency": sample("esper_eventstore_append_latency_seconds_count", backend="file"),
        "batch": sample("esper_eventstore_fsync_batch_size_events_sum"),
        "bytes": sample("esper_eventstore_written_bytes_total", backend="file"),
        "recovery": sample("esper_eventstore_recovery_duration_seconds_count"),
        "truncated": sample("esper_eventstore_truncated_bytes_total"),
        "duplicates": sample("esper_eventstore_duplicate_events_total", backend="file"),
    }
    log = tmp_path / "log"
    with FileStore(log) as store:
        events = [make_event("run-a") for _ in range(5)]
        store.append(events)
        store.append(events[:2])
        size = store._log.segments[0].end
    with (log / f"{1:020d}.wal").open("ab") as handle:
        handle.write(b"torn")
    FileStore(log).close()
    assert sample("esper_eventstore_append_latency_seconds_count", backend="file") == before["latency"] + 2
    assert sample("esper_eventstore_fsync_batch_size_events_sum") == before["batch"] + 5
    assert sample("esper_eventstore_written_bytes_total", backend="file") == before["bytes"] + size
    assert sample("esper_eventstore_recovery_duration_seconds_count") == before["recovery"] + 2
    assert sample("esper_eventstore_truncated_bytes_total") == before["truncated"] + 4
    assert sample("esper_eventstore_duplicate_events_total", backend="file") == before["duplicates"] + 2
