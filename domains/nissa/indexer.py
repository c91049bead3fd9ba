"""Events into Elasticsearch (SPEC §11): one document per event, `_id` = event_id, so indexing an event
again overwrites it instead of adding a copy; an index template gives every index `esper-events*` its
mappings; a durable cursor (the last global position indexed) is saved after each acknowledged bulk
request, so an indexer killed at any point resumes where the index is known to be complete and at worst
re-sends one batch.
"""

from __future__ import annotations

import hashlib
import json
import os
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
    for envelope in events:
        yield {"_index": index, "_id": envelope.event_id, "_source": document(envelope)}


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

    def _send(self, events: list[pb.EventEnvelope]) -> None:
        try:
            from elasticsearch import (
                helpers,
            )  # the client is imported where it is used (`esper index --help`)

            _, errors = helpers.bulk(
                self.es, actions(events, self.index), chunk_size=len(events), raise_on_error=False
            )
        except Exception as exc:  # the client's transport and API errors alike
            raise IndexingError(f"bulk request failed: {exc}") from exc
        if isinstance(errors, list) and errors:
            raise IndexingError(f"{len(errors)} document(s) refused, first: {json.dumps(errors[0])[:300]}")
        self.cursor.save(events[-1].global_position)
        INDEXED_EVENTS.inc(len(events))
        INDEXED_POSITION.set(events[-1].global_position)

    def catch_up(self, batch: int = BATCH) -> int:
        """Index every event after the cursor up to the head; returns how many were sent."""
        head = self.store.head_position()
        sent = 0
        pending: list[pb.EventEnvelope] = []
        for envelope in self.store.read_all(self.cursor.position + 1, to_position=head):
            pending.append(envelope)
            if len(pending) >= batch:
                self._send(pending)
                sent += len(pending)
                pending = []
        if pending:
            self._send(pending)
            sent += len(pending)
        return sent

    def follow(self, stop: threading.Event, batch: int = BATCH, poll_timeout: float = 0.2) -> None:
        """Catch up, then index new events as they are committed until `stop` is set."""
        self.catch_up(batch)
        subscription = self.store.subscribe(self.cursor.position + 1, timeout=poll_timeout)
        try:
            while not stop.is_set():
                events = subscription.poll(timeout=poll_timeout, max_events=batch)
                if events:
                    self._send(events)
        finally:
            subscription.close()
