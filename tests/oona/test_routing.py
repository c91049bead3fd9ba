"""Pure routing and backpressure rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domains.oona.routing import DRAIN_ORDER, Queue, Thresholds, admit, route
from leyline import pb
from leyline.registry import EVENT_TYPES
from tests.mirror.redis_support import (
    emergency_event,
    epoch_event,
    field_report_event,
    policy_event,
    telemetry_event,
)


def test_routes_by_priority_then_type() -> None:
    assert route(emergency_event()) is Queue.EMERGENCY
    assert route(telemetry_event()) is Queue.TELEMETRY
    assert route(policy_event()) is Queue.POLICY
    assert route(field_report_event()) is Queue.FIELD_REPORTS
    assert route(epoch_event()) is Queue.NORMAL
    urgent_telemetry = telemetry_event()
    urgent_telemetry.priority = pb.MESSAGE_PRIORITY_EMERGENCY
    assert route(urgent_telemetry) is Queue.EMERGENCY


def test_every_registered_type_has_a_queue_and_only_telemetry_is_droppable() -> None:
    for name, _ in EVENT_TYPES:
        queue = route(pb.EventEnvelope(event_type=name, priority=pb.MESSAGE_PRIORITY_NORMAL))
        assert queue in DRAIN_ORDER
        assert (admit(queue, 10**9, Thresholds()) is None) == (name == "TelemetryReported")


def test_emergency_is_drained_first() -> None:
    assert DRAIN_ORDER[0] is Queue.EMERGENCY
    assert set(DRAIN_ORDER) == set(Queue)


def test_thresholds_are_the_spec_defaults_and_validated() -> None:
    assert Thresholds() == Thresholds(reroute_above=4000, drop_above=8000)
    with pytest.raises(ValueError, match="reroute_above <= drop_above"):
        Thresholds(reroute_above=10, drop_above=5)
    with pytest.raises(ValueError):
        Thresholds(reroute_above=-1, drop_above=5)


@given(
    queue=st.sampled_from(list(Queue)),
    depth=st.integers(0, 20_000),
    reroute=st.integers(0, 10_000),
    extra=st.integers(0, 10_000),
)
def test_admit_never_drops_events_of_record(queue: Queue, depth: int, reroute: int, extra: int) -> None:
    thresholds = Thresholds(reroute, reroute + extra)
    admitted = admit(queue, depth, thresholds)
    if queue is Queue.TELEMETRY:
        assert admitted is (None if depth > thresholds.drop_above else Queue.TELEMETRY)
    elif queue is Queue.NORMAL:
        assert admitted is (Queue.OVERFLOW if depth > thresholds.reroute_above else Queue.NORMAL)
    else:
        assert admitted is queue
