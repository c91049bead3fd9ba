"""Events into Elasticsearch (SPEC §11): one document per event, `_id` = event_id, so indexing an event
again overwrites it instead of adding a copy; an index template gives every index `esper-events*` its
mappings; a durable cursor (the last global position indexed) is saved after each acknowledged bulk
request, so an indexer killed at any point resumes where the index is known to be complete and at worst
re-sends one batch.

Where the time goes (`esper bench serve`): the server indexing each request dominates; reading the log and
building and serializing documents (protobuf to dict to JSON) is the rest. Catching up, the next batches
are read and serialized on a second thread while a request is in flight, and sent pre-serialized through
the client's `bulk` API (one request per batch, one connection, in order: the cursor only moves past
acknowledged batches).
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.protobuf.json_format import MessageToDict

from domains.nissa.metrics import INDEXED_EVENTS, INDEXED_POSITION
from eventstore import EventStore
from leyline import category_of, decode_payload, pb

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

DEFAULT_INDEX = "esper-events"
BATCH = 1000
PREFETCH = 2  # serialized batches ready ahead of the one in flight
TEMPLATE: dict[str, Any] = {
    "settings": {"number_of_shards": 1},
    "mappings": {
        "dynamic": False,
        "properties": {
            "event_id": {"type": "keyword"},
            "event_type": {"type": "keyword"},
            "stream": {"type": "keyword"},
            "category": {"type": "keyword"},
            "stream_version": {"type": "long"},
            "global_position": {"type": "long"},
            "schema_version": {"type": "integer"},
            "@timestamp": {"type": "date", "format": "epoch_millis"},
            "occurred_at_ns": {"type": "long"},
            "run_id": {"type": "keyword"},
            "epoch": {"type": "integer"},
            "correlation_id": {"type": "keyword"},
            "causation_id": {"type": "keyword"},
            "source": {"type": "keyword"},
            "key_id": {"type": "keyword"},
            # kept whole in _source, not indexed: payloads of different event types share field names
            # with different types, which one mapping cannot hold
            "payload": {"type": "object", "enabled": False},
        },
    },
}


class IndexingError(Exception):
    """Elasticsearch refused documents or is unreachable."""


def document(envelope: pb.EventEnvelope) -> dict[str, Any]:
    return {
        "event_id": envelope.event_id,
        "event_type": envelope.event_type,
        "stream": envelope.stream,
        "category": category_of(envelope.stream),
        "stream_version": envelope.stream_version,
        "global_position": envelope.global_position,
        "schema_version": envelope.schema_version,
        "@timestamp": envelope.occurred_at_ns // 1_000_000,
        "occurred_at_ns": envelope.occurred_at_ns,
        "run_id": envelope.run_id or None,
        "epoch": envelope.epoch if envelope.HasField("epoch") else None,
        "correlation_id": envelope.correlation_id or None,
        "causation_id": envelope.causation_id or None,
        "source": envelope.source or None,
        "key_id": envelope.key_id or None,
        "payload": MessageToDict(decode_payload(envelope), preserving_proto_field_name=True),
    }


def actions(events: Iterable[pb.EventEnvelope], index: str) -> Iterator[dict[str, Any]]:
    """The events as `elasticsearch.helpers` actions (the benchmark's raw baseline sends these)."""
    for envelope in events:
        yield {"_index": index, "_id": envelope.event_id, "_source": document(envelope)}


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Batch:
    """One bulk request's NDJSON body: an action line and a document line per event."""

    body: bytes
    count: int
    last_position: int


def _batch(lines: list[str], last_position: int) -> Batch:
    return Batch(("\n".join(lines) + "\n").encode(), len(lines) // 2, last_position)


def batches(events: Iterable[pb.EventEnvelope], index: str, size: int) -> Iterator[Batch]:
    lines: list[str] = []
    last = 0
    for envelope in events:
        lines.append(_dumps({"index": {"_index": index, "_id": envelope.event_id}}))
        lines.append(_dumps(document(envelope)))
        last = envelope.global_position
        if len(lines) >= 2 * size:
            yield _batch(lines, last)
            lines = []
    if lines:
        yield _batch(lines, last)


def prefetched(items: Iterator[Batch], depth: int = PREFETCH) -> Iterator[Batch]:
    """`items` produced on a thread of their own, up to `depth` ahead: the next batch is read from the log
    and serialized while the server indexes the one before (the client waits on the socket, which
    releases the GIL). The producer stops when the consumer does; its exceptions are raised here."""
    ready: queue.Queue[Batch | BaseException | None] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Batch | BaseException | None) -> None:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                put(item)
            put(None)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)

    producer = threading.Thread(target=produce, name="esper-index-prefetch", daemon=True)
    producer.start()
    try:
        while (item := ready.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        producer.join()


@dataclass
class Cursor:
    """The last global position known to be indexed, in `<data-dir>/index/`, one file per (server, index)."""

    path: Path
    position: int = 0

    @classmethod
    def load(cls, directory: Path, url: str, index: str) -> Cursor:
        digest = hashlib.sha256(f"{url}|{index}".encode()).hexdigest()[:12]
        path = Path(directory) / f"cursor-{index}-{digest}.json"
        try:
            position = int(json.loads(path.read_text())["position"])
        except FileNotFoundError:
            position = 0
        except (OSError, ValueError, KeyError) as exc:
            raise IndexingError(
                f"index cursor {path} is unreadable ({exc}); delete it to index from the start"
            ) from None
        return cls(path, position)

    def save(self, position: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        with open(temporary, "w") as handle:
            json.dump({"position": position}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        self.position = position


class Indexer:
    def __init__(
        self, store: EventStore, es: Elasticsearch, cursor: Cursor, index: str = DEFAULT_INDEX
    ) -> None:
        self.store = store
        self.es = es
        self.cursor = cursor
        self.index = index

    def prepare(self) -> None:
        """Install the index template (idempotent)."""
        self.es.indices.put_index_template(
            name=self.index, index_patterns=[f"{self.index}*"], template=TEMPLATE
        )

    def _send(self, batch: Batch) -> None:
        try:
            # pre-serialized NDJSON, as elasticsearch.helpers hands it to the same API (its stub types the
            # parameter as mappings only)
            response = self.es.bulk(operations=batch.body)  # type: ignore[arg-type]
        except Exception as exc:  # the client's transport and API errors alike
            raise IndexingError(f"bulk request failed: {exc}") from exc
        if response.get("errors"):
            refused = [item for item in response["items"] if "error" in next(iter(item.values()))]
            if refused:
                first = json.dumps(refused[0])[:300]
                raise IndexingError(f"{len(refused)} document(s) refused, first: {first}")
        self.cursor.save(batch.last_position)
        INDEXED_EVENTS.inc(batch.count)
        INDEXED_POSITION.set(batch.last_position)

    def catch_up(self, batch: int = BATCH) -> int:
        """Index every event after the cursor up to the head; returns how many were sent."""
        head = self.store.head_position()
        events = self.store.read_all(self.cursor.position + 1, to_position=head)
        sent = 0
        for prepared in prefetched(batches(events, self.index, batch)):
            self._send(prepared)
            sent += prepared.count
        return sent

    def follow(self, stop: threading.Event, batch: int = BATCH, poll_timeout: float = 0.2) -> None:
        """Catch up, then index new events as they are committed until `stop` is set."""
        self.catch_up(batch)
        subscription = self.store.subscribe(self.cursor.position + 1, timeout=poll_timeout)
        try:
            while not stop.is_set():
                events = subscription.poll(timeout=poll_timeout, max_events=batch)
                for prepared in batches(events, self.index, batch):
                    self._send(prepared)
        finally:
            subscription.close()
