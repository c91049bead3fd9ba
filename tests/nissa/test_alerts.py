"""Alerts of record: the conditions on the event stream, Nissa appending them once, and their channels."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from domains.nissa import conditions, rules
from domains.nissa.routing import FileChannel, Router, WebhookChannel
from domains.nissa.service import Nissa
from domains.tolaria.aggregate import GUARD
from eventstore import EventFilter, open_store
from leyline import decode_payload, new_envelope, pb
from leyline.datadir import DataDir
from ops.serve import queries
from projections import catch_up, open_db, resolve_url
from projections.audit import audit_run

RUN = "r1"
_clock = iter(range(1_000_000_000, 10**18, 1_000_000_000))


def hook(total_ms: float, epoch: int = 1, run_id: str = RUN) -> pb.EventEnvelope:
    payload = pb.EpochHookTimed(epoch=epoch, total_ms=total_ms, budget_ms=18.0, overrun=total_ms > 18)
    return new_envelope(
        "EpochHookTimed", f"run-{run_id}", payload, run_id=run_id, occurred_at_ns=next(_clock)
    )


def epoch_done(epoch: int, run_id: str = RUN) -> pb.EventEnvelope:
    return new_envelope("EpochCompleted", f"run-{run_id}", pb.EpochCompleted(), run_id=run_id, epoch=epoch)


def violation(run_id: str = RUN) -> pb.EventEnvelope:
    payload = pb.IsolationViolationDetected(
        slot=0, seed_id=1, violation_count=1, parameter="w", gradient_norm=0.5
    )
    return new_envelope("IsolationViolationDetected", f"seed-{run_id}.0", payload, run_id=run_id)


def retry(at_s: float) -> pb.EventEnvelope:
    payload = pb.CompileJobFailed(job_id="j", attempt=1, error="boom", will_retry=True)
    return new_envelope("CompileJobFailed", "compile-j", payload, occurred_at_ns=int(at_s * 1e9))


def guard_rollback(run_id: str = RUN) -> pb.EventEnvelope:
    payload = pb.RollbackRequested(run_id=run_id, target_epoch=1, requested_by=GUARD, reason="loss explosion")
    return new_envelope("RollbackRequested", f"run-{run_id}", payload, run_id=run_id)


def run_completed(run_id: str = RUN) -> pb.EventEnvelope:
    return new_envelope("RunCompleted", f"run-{run_id}", pb.RunCompleted(), run_id=run_id)


def evaluate(events: list[pb.EventEnvelope]) -> list[tuple[str, str]]:
    """(event type, alert name) of every alert the events cause, evaluated as Nissa does."""
    state = conditions.State()
    out = []
    for position, envelope in enumerate(events, 1):
        envelope.global_position = position
        state = conditions.evolve(state, envelope)
        for alert in conditions.decide(state, envelope):
            state = conditions.evolve(state, alert)
            out.append((alert.event_type, decode_payload(alert).name))  # type: ignore[attr-defined]
    return out


def test_training_latency_high_fires_over_budget_and_resolves_under_it() -> None:
    name = conditions.instance(rules.TRAINING_LATENCY_HIGH, RUN)
    slow = [hook(40.0, epoch) for epoch in range(1, 6)]
    fast = [hook(2.0, epoch) for epoch in range(6, 6 + rules.HOOK_WINDOW)]
    assert evaluate(slow + fast) == [("AlertFired", name), ("AlertResolved", name)]
    assert evaluate([hook(2.0, epoch) for epoch in range(1, 20)]) == []
    assert evaluate([hook(40.0, epoch) for epoch in range(1, rules.HOOK_MIN_SAMPLES)]) == []


def test_isolation_violation_fires_and_resolves_after_calm_epochs() -> None:
    name = conditions.instance(rules.KASMINA_ISOLATION_VIOLATION, RUN)
    calm = [epoch_done(epoch) for epoch in range(2, 2 + rules.ISOLATION_CLEAR_EPOCHS)]
    assert evaluate([epoch_done(1), violation(), *calm]) == [("AlertFired", name), ("AlertResolved", name)]
    assert evaluate([epoch_done(epoch) for epoch in range(1, 10)]) == []
    assert evaluate([violation(), run_completed()]) == [("AlertFired", name), ("AlertResolved", name)]


def test_loss_explosion_fires_on_a_guard_rollback_and_resolves_after_steady_epochs() -> None:
    name = conditions.instance(rules.TRAINING_LOSS_EXPLOSION, RUN)
    steady = [epoch_done(epoch) for epoch in range(2, 2 + rules.EXPLOSION_CLEAR_EPOCHS)]
    assert evaluate([epoch_done(1), guard_rollback(), *steady]) == [
        ("AlertFired", name),
        ("AlertResolved", name),
    ]
    operator = pb.RollbackRequested(run_id=RUN, target_epoch=1, requested_by="alice", reason="by hand")
    by_hand = new_envelope("RollbackRequested", f"run-{RUN}", operator, run_id=RUN)
    assert evaluate([epoch_done(1), by_hand, *steady]) == []


def test_compile_retries_fire_only_within_the_window() -> None:
    name = rules.TEZZERET_COMPILE_RETRY_HIGH
    burst = [retry(at) for at in range(rules.RETRY_THRESHOLD + 1)]
    assert evaluate(burst) == [("AlertFired", name)]
    spread = [retry(at * (rules.RETRY_WINDOW_S + 1)) for at in range(rules.RETRY_THRESHOLD + 3)]
    assert evaluate(spread) == []
    assert evaluate([*burst, retry(10 * rules.RETRY_WINDOW_S)]) == [
        ("AlertFired", name),
        ("AlertResolved", name),
    ]


def compiled(at_s: float) -> pb.EventEnvelope:
    payload = pb.CompileJobSucceeded(job_id="j", attempt=2, artifact_hash="h", duration_ms=1.0)
    return new_envelope("CompileJobSucceeded", "compile-j", payload, occurred_at_ns=int(at_s * 1e9))


def test_compile_retries_resolve_on_a_compile_that_succeeds_after_them() -> None:
    name = rules.TEZZERET_COMPILE_RETRY_HIGH
    burst = [retry(at) for at in range(1, rules.RETRY_THRESHOLD + 2)]
    # a success before the burst is no evidence of recovery, one after it is (well inside the window)
    assert evaluate([compiled(0.5), *burst]) == [("AlertFired", name)]
    assert evaluate([*burst, compiled(rules.RETRY_THRESHOLD + 2)]) == [
        ("AlertFired", name),
        ("AlertResolved", name),
    ]
    # failing again after the recovery fires again
    again = [retry(at) for at in range(rules.RETRY_THRESHOLD + 3, rules.RETRY_THRESHOLD + 5)]
    assert evaluate([*burst, compiled(rules.RETRY_THRESHOLD + 2), *again]) == [
        ("AlertFired", name),
        ("AlertResolved", name),
        ("AlertFired", name),
    ]


def mirror_health(healthy: bool, source: str = rules.MIRROR_TELEMETRY_SOURCE) -> pb.EventEnvelope:
    packet = pb.TelemetryPacket(
        source=source,
        metrics=[pb.MetricPoint(name=rules.MIRROR_LAG_METRIC, value=12.0)],
        events=[pb.TelemetryEvent(name="redis_down", message="Connection refused")],
        health=pb.HEALTH_STATUS_HEALTHY if healthy else pb.HEALTH_STATUS_UNHEALTHY,
    )
    return new_envelope("TelemetryReported", rules.MIRROR_TELEMETRY_STREAM, packet)


def test_mirror_redis_down_follows_the_mirrors_health_reports() -> None:
    name = rules.MIRROR_REDIS_DOWN
    assert evaluate([mirror_health(False), mirror_health(False), mirror_health(True)]) == [
        ("AlertFired", name),
        ("AlertResolved", name),
    ]
    assert evaluate([mirror_health(True)]) == []
    assert evaluate([mirror_health(False, source="tolaria")]) == []


@given(st.lists(st.sampled_from(["slow", "fast", "violation", "epoch", "end", "explosion"]), max_size=40))
def test_fired_and_resolved_alternate_per_instance(kinds: list[str]) -> None:
    makers = {
        "slow": lambda: hook(50.0),
        "fast": lambda: hook(1.0),
        "violation": violation,
        "epoch": lambda: epoch_done(1),
        "end": run_completed,
        "explosion": guard_rollback,
    }
    last: dict[str, str] = {}
    for kind, name in evaluate([makers[k]() for k in kinds]):
        assert last.get(name, "AlertResolved") != kind
        last[name] = kind


class _Webhook(BaseHTTPRequestHandler):
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.attempts += 1
        status = 503 if self.server.attempts <= self.server.fail_first else 200
        if status == 200:
            self.server.received.append(json.loads(body))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextmanager
def webhook(fail_first: int = 0) -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    server.attempts, server.fail_first, server.received = 0, fail_first, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        server.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_retries_with_backoff_then_counts_the_failure() -> None:
    pauses: list[float] = []
    with webhook(fail_first=2) as hook_server:
        WebhookChannel(hook_server.url, attempts=4, backoff_s=0.1, sleep=pauses.append).send({"a": 1})
        assert hook_server.received == [{"a": 1}] and pauses == [0.1, 0.2]
    before = REGISTRY.get_sample_value("esper_nissa_webhook_failures_total") or 0.0
    with webhook(fail_first=10) as hook_server:
        router = Router([WebhookChannel(hook_server.url, attempts=3, backoff_s=0.0, sleep=pauses.append)])
        router.route(_fired())
        assert hook_server.attempts == 3 and router.last_error and "503" in router.last_error
    assert REGISTRY.get_sample_value("esper_nissa_webhook_failures_total") == before + 1


def _fired() -> pb.EventEnvelope:
    alert = pb.Alert(name="x", severity="warning", summary="s", labels={"alertname": "x"}, value=1.0)
    return new_envelope("AlertFired", "alert-x", alert)


def test_nissa_appends_alerts_once_routes_them_and_the_read_models_show_them(tmp_path: Path) -> None:
    store = open_store(DataDir(tmp_path).log)
    alert_file = tmp_path / "alerts.jsonl"
    events = [new_envelope("RunStarted", f"run-{RUN}", pb.RunStarted(run_id=RUN), run_id=RUN)]
    events += [hook(40.0, epoch) for epoch in range(1, 6)] + [
        hook(1.0, epoch) for epoch in range(6, 6 + rules.HOOK_WINDOW)
    ]
    events += [violation(), run_completed()]
    try:
        store.append(events)
        with webhook() as hook_server:
            router = Router([WebhookChannel(hook_server.url), FileChannel(alert_file)])
            Nissa(store, router).catch_up()
            Nissa(store, router).catch_up()  # a restart evaluates the log again: nothing new
            received = hook_server.received
        alerts = list(store.read_all(event_filter=EventFilter(event_types=conditions.ALERT_EVENTS)))
        engine = open_db(resolve_url(tmp_path))
        catch_up(store, engine)
        shown = queries.alerts(engine)
        assert audit_run(engine, RUN)["run"]["status"] == "completed"
        engine.dispose()
    finally:
        store.close()
    assert [a.event_type for a in alerts] == ["AlertFired", "AlertResolved", "AlertFired", "AlertResolved"]
    assert [r["status"] for r in received] == ["firing", "resolved", "firing", "resolved"]
    assert [json.loads(line)["event_id"] for line in alert_file.read_text().splitlines()] == [
        a.event_id for a in alerts
    ]
    assert shown["firing"] == 0 and len(shown["events"]) == 4
    assert {a["name"] for a in shown["alerts"]} == {
        conditions.instance(rules.TRAINING_LATENCY_HIGH, RUN),
        conditions.instance(rules.KASMINA_ISOLATION_VIOLATION, RUN),
    }
