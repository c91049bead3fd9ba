"""Esper's log as a persistence module of the `eventsourcing` library (issue 19).

An `eventsourcing` application runs on Esper's file store or PostgreSQL store with

    PERSISTENCE_MODULE=eventstore.eventsourcing_recorders
    ESPER_STORE_URL=<a directory, or a postgresql:// URL>
    ESPER_STORE_FSYNC=always|batch|interval:<ms>       (optional, file store)
    ORIGINATOR_ID_TYPE=uuid|text                        (optional, default uuid, as the library's SQLite)

in the application's environment. Only the stores' public API (`open_store`, `EventStore`) is used.

How the library's records map onto the log:
- a stored event is an envelope in stream `es.<app>.<purpose>-<originator id>` (`<app>` is the
  application's name in lower case, or `stored`; `<purpose>` is `events`, `snapshots`, …), event type =
  its topic, payload = its state bytes, event id = `<stream>@<originator version>`;
- a notification id is the event's global position, so notifications of several applications or of
  Esper's own events in one log are ordered together; ids have gaps where other events lie between, and
  `max_notification_id` is the log's head;
- a tracking record is an envelope in stream `es.<app>.tracking-<upstream application>` (payload: the
  notification id in decimal), appended in the same atomic append as the events it tracks;
- a conflict (an originator version or a tracking id already recorded) is detected by the store's
  expected-version check inside the append and raised as the library's IntegrityError.

Difference by design from the library's SQL recorders: the versions of one originator must be
contiguous (what aggregates produce: each event one above the last), because they map onto the stream's
own contiguous versions; an insert that would leave a gap is refused as an IntegrityError. The library's
recorder test cases, run against both backends in tests/eventstore/test_eventsourcing_recorders.py,
pass unmodified; none is skipped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal, cast
from uuid import UUID

from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    DatabaseError,
    DataError,
    InfrastructureFactory,
    IntegrityError,
    Notification,
    OperationalError,
    ProcessRecorder,
    StoredEvent,
    Subscription,
    Tracking,
    TrackingRecorder,
)
from eventsourcing.utils import Environment, EnvType, resolve_topic

from eventstore import (
    NO_STREAM,
    EventFilter,
    EventStore,
    EventStoreError,
    Expected,
    InvalidEvent,
    StoreUnavailable,
    WrongExpectedVersion,
    exact,
    open_store,
)
from leyline import pb

SOURCE = "eventsourcing"
TRACKING_TYPE = "Tracking"
POLL_S = 0.1  # how long a subscription waits for new events before checking whether it was stopped
Record = tuple[str, pb.EventEnvelope, Expected]  # an envelope, its stream, the version the stream must be at


@contextmanager
def _translated() -> Iterator[None]:
    """Esper's store errors as the library's persistence errors."""
    try:
        yield
    except WrongExpectedVersion as exc:
        raise IntegrityError(str(exc)) from exc
    except StoreUnavailable as exc:
        raise OperationalError(str(exc)) from exc
    except InvalidEvent as exc:
        raise DataError(str(exc)) from exc
    except EventStoreError as exc:
        raise DatabaseError(str(exc)) from exc


def _version_of(envelope: pb.EventEnvelope) -> int:
    return int(envelope.event_id.rpartition("@")[2])


class _Log:
    """What every recorder shares: the store, and how originator ids become stream names and back."""

    def __init__(self, store: EventStore, originator_id_type: Literal["uuid", "text"]) -> None:
        self.store = store
        self.uuid_ids = originator_id_type == "uuid"

    def originator(self, stream: str) -> UUID | str:
        identifier = stream.partition("-")[2]
        return UUID(identifier) if self.uuid_ids else identifier

    def last_event(self, stream: str) -> tuple[int, pb.EventEnvelope | None]:
        """The stream's version (its number of events) and its last event."""
        count = self.store.stream_version(stream)
        return count, (self.store.read_stream(stream, count, 1)[0] if count else None)


class EsperAggregateRecorder(AggregateRecorder):
    """Stored events of one purpose (`events`, `snapshots`, …) of one application, in their own streams."""

    def __init__(self, log: _Log, category: str) -> None:
        self.log = log
        self.category = category

    def stream(self, originator_id: UUID | str) -> str:
        return f"{self.category}-{originator_id}"

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        self._append(stored_events)
        return None

    def _append(self, stored_events: Sequence[StoredEvent], also: Record | None = None) -> list[int]:
        """Append the events (and `also`, a tracking record) atomically; conflicts raise IntegrityError."""
        with _translated():
            return self._append_translated(stored_events, also)

    def _append_translated(self, stored_events: Sequence[StoredEvent], also: Record | None) -> list[int]:
        envelopes: list[pb.EventEnvelope] = []
        expected: dict[str, Expected] = {}
        following: dict[str, int] = {}  # stream → the originator version its next event must have
        for stored in stored_events:
            stream = self.stream(stored.originator_id)
            if stream not in following:
                count, last = self.log.last_event(stream)
                expected[stream] = exact(count) if count else NO_STREAM
                following[stream] = _version_of(last) + 1 if last is not None else stored.originator_version
            if stored.originator_version != following[stream]:
                raise IntegrityError(
                    f"{stream}: version {stored.originator_version} conflicts with the recorded ones "
                    f"(the next one is {following[stream]})"
                )
            following[stream] += 1
            envelopes.append(
                pb.EventEnvelope(
                    event_id=f"{stream}@{stored.originator_version}",
                    event_type=stored.topic,
                    stream=stream,
                    source=SOURCE,
                    payload=stored.state,
                )
            )
        if also is not None:
            stream, envelope, version = also
            envelopes.append(envelope)
            expected[stream] = version
        return self.log.store.append(envelopes, expected) if envelopes else []

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        stream = self.stream(originator_id)
        with _translated():
            first_events = self.log.store.read_stream(stream, 1, 1)
            if not first_events:
                return []
            first = _version_of(first_events[0])
            # Stream version s holds originator version first + s - 1 (they are contiguous).
            lower = 1 if gt is None else max(1, gt - first + 2)
            upper = self.log.store.stream_version(stream)
            if lte is not None:
                upper = min(upper, lte - first + 1)
            if limit is not None:
                if desc:
                    lower = max(lower, upper - limit + 1)
                else:
                    upper = min(upper, lower + limit - 1)
            if lower > upper:
                return []
            envelopes = self.log.store.read_stream(stream, lower, upper - lower + 1)
        events = [
            StoredEvent(originator_id, first + e.stream_version - 1, e.event_type, e.payload)
            for e in envelopes
        ]
        return events[::-1] if desc else events


class EsperApplicationRecorder(EsperAggregateRecorder, ApplicationRecorder):
    """An application's events, with the log's global positions as notification ids."""

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        return self._append(stored_events)

    def filter(self, topics: Sequence[str]) -> EventFilter:
        return EventFilter(categories=frozenset({self.category}), event_types=frozenset(topics))

    def notification(self, envelope: pb.EventEnvelope) -> Notification:
        return Notification(
            id=envelope.global_position,
            originator_id=self.log.originator(envelope.stream),
            originator_version=_version_of(envelope),
            topic=envelope.event_type,
            state=envelope.payload,
        )

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        first = 1 if start is None else start + (0 if inclusive_of_start else 1)
        with _translated():
            envelopes = self.log.store.read_all(
                from_position=first, event_filter=self.filter(topics), limit=limit, to_position=stop
            )
            return [self.notification(envelope) for envelope in envelopes]

    def max_notification_id(self) -> int | None:
        with _translated():
            return self.log.store.head_position() or None

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[ApplicationRecorder]:
        return EsperSubscription(self, gt, topics)


class EsperSubscription(Subscription[EsperApplicationRecorder]):
    """Notifications after `gt`, then new ones as they are committed, through the store's subscription."""

    def __init__(self, recorder: EsperApplicationRecorder, gt: int | None = None, topics: Sequence[str] = ()):
        super().__init__(recorder, gt, topics)
        self._events = recorder.log.store.subscribe(
            from_position=(gt or 0) + 1, event_filter=recorder.filter(topics), timeout=POLL_S
        )
        self._buffer: deque[pb.EventEnvelope] = deque()

    def __next__(self) -> Notification:
        while not self._buffer and not self._has_been_stopped:
            self._buffer.extend(self._events.poll(timeout=POLL_S, max_events=500))
        if self._has_been_stopped:
            self._events.close()
            raise StopIteration
        return self._recorder.notification(self._buffer.popleft())


class EsperTrackingRecorder(TrackingRecorder):
    """Which notifications of each upstream application were processed: a stream per upstream."""

    def __init__(self, log: _Log, category: str) -> None:
        self.log = log
        self.tracking_category = category

    def tracking_record(self, tracking: Tracking) -> Record:
        """The envelope recording `tracking`, its stream and the version that stream must be at."""
        stream = f"{self.tracking_category}-{tracking.application_name}"
        with _translated():
            count, last = self.log.last_event(stream)
        if last is not None and tracking.notification_id <= int(last.payload):
            raise IntegrityError(
                f"tracking {tracking.application_name} {tracking.notification_id}: "
                f"already at {int(last.payload)}"
            )
        envelope = pb.EventEnvelope(
            event_id=f"{stream}@{tracking.notification_id}",
            event_type=TRACKING_TYPE,
            stream=stream,
            source=SOURCE,
            payload=str(tracking.notification_id).encode(),
        )
        return stream, envelope, exact(count) if count else NO_STREAM

    def insert_tracking(self, tracking: Tracking) -> None:
        stream, envelope, expected = self.tracking_record(tracking)
        with _translated():
            self.log.store.append([envelope], {stream: expected})

    def max_tracking_id(self, application_name: str) -> int | None:
        with _translated():
            last = self.log.last_event(f"{self.tracking_category}-{application_name}")[1]
        return int(last.payload) if last is not None else None


class EsperProcessRecorder(EsperTrackingRecorder, EsperApplicationRecorder, ProcessRecorder):
    """Events and the tracking record of the notification that caused them, in one atomic append."""

    def __init__(self, log: _Log, category: str, tracking_category: str) -> None:
        EsperApplicationRecorder.__init__(self, log, category)
        EsperTrackingRecorder.__init__(self, log, tracking_category)

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        tracking: Tracking | None = kwargs.get("tracking")
        return self._append(stored_events, self.tracking_record(tracking) if tracking is not None else None)


class EsperFactory(InfrastructureFactory[EsperTrackingRecorder]):
    """Opens the store named by ESPER_STORE_URL once; every recorder it makes shares it."""

    ESPER_STORE_URL = "ESPER_STORE_URL"
    ESPER_STORE_FSYNC = "ESPER_STORE_FSYNC"
    ORIGINATOR_ID_TYPE = "ORIGINATOR_ID_TYPE"

    def __init__(self, env: Environment | EnvType | None):
        super().__init__(env)
        location = self.env.get(self.ESPER_STORE_URL)
        if not location:
            keys = ", ".join(self.env.create_keys(self.ESPER_STORE_URL))
            raise OSError(f"Esper store location not found in environment with keys: {keys}")
        id_type = (self.env.get(self.ORIGINATOR_ID_TYPE) or "uuid").lower()
        if id_type not in ("uuid", "text"):
            raise OSError(f"Invalid {self.ORIGINATOR_ID_TYPE} {id_type!r}, must be 'uuid' or 'text'")
        options: dict[str, object] = {}
        fsync = self.env.get(self.ESPER_STORE_FSYNC)
        if fsync:
            options["fsync"] = fsync
        with _translated():
            store = open_store(location, **options)
        self.log = _Log(store, cast(Literal["uuid", "text"], id_type))
        self.prefix = self.env.name.lower() or "stored"

    def _category(self, purpose: str) -> str:
        """`es.<app>.<purpose>`: a stream category, so without '-'."""
        return f"es.{self.prefix}.{purpose}".replace("-", "_")

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        return EsperAggregateRecorder(self.log, self._category(purpose))

    def application_recorder(self) -> ApplicationRecorder:
        recorder_class: type[EsperApplicationRecorder] = self._topic(
            self.APPLICATION_RECORDER_TOPIC, EsperApplicationRecorder
        )
        return recorder_class(self.log, self._category("events"))

    def tracking_recorder(
        self, tracking_recorder_class: type[EsperTrackingRecorder] | None = None
    ) -> EsperTrackingRecorder:
        recorder_class = tracking_recorder_class or self._topic(
            self.TRACKING_RECORDER_TOPIC, EsperTrackingRecorder
        )
        return recorder_class(self.log, self._category("tracking"))

    def process_recorder(self) -> ProcessRecorder:
        recorder_class: type[EsperProcessRecorder] = self._topic(
            self.PROCESS_RECORDER_TOPIC, EsperProcessRecorder
        )
        return recorder_class(self.log, self._category("events"), self._category("tracking"))

    def _topic(self, key: str, default: type[Any]) -> Any:
        """The recorder class named by the environment's topic `key`, which must extend `default`."""
        topic = self.env.get(key)
        chosen = resolve_topic(topic) if topic else default
        if not (isinstance(chosen, type) and issubclass(chosen, default)):
            raise OSError(f"{key}={topic!r} does not name a subclass of {default.__name__}")
        return chosen

    def close(self) -> None:
        with _translated():
            self.log.store.close()


__all__ = [
    "EsperAggregateRecorder",
    "EsperApplicationRecorder",
    "EsperFactory",
    "EsperProcessRecorder",
    "EsperSubscription",
    "EsperTrackingRecorder",
]
