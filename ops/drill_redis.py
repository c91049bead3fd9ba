"""`esper drill redis-loss`: Redis dies under a run that mirrors to it, and comes back empty.

A short real run mirrors its log to a redis-server of the drill's own (a free port, a temporary directory,
no persistence). After epoch KILL_AFTER_EPOCH the server is SIGKILLed: training goes on (the log is the
source of truth, appends never wait on Redis), the mirror backs off and records its outage in the log, where
Nissa fires mirror_redis_down. After epoch RESTART_AFTER_EPOCH the server is started again, empty: the
mirror finds the data lost, re-mirrors from the log, and once it holds the head records that it caught up,
which resolves the alert. Then Redis must hold exactly the log's events: none missing, none twice.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from domains.nissa import rules
from eventstore import EventStore
from leyline import category_of, decode_payload, pb
from leyline.datadir import DataDir
from ops.drill_support import alert_of_record, events, first_over, idle_until, train, verdict_of
from ops.errors import CommandError
from ops.prometheus.evaluate import check_alert

KILL_AFTER_EPOCH = 2
RESTART_AFTER_EPOCH = 5
REDIS_LOSS_EPOCHS = 8
DOWN_SERIES = "esper_eventstore_mirror_redis_down"
PREFIX = "esper"
WAIT_S = 60.0  # only keeps a broken drill from hanging


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-loss drill: {what} did not happen within {WAIT_S:g} s")
        time.sleep(0.01)


def compare_with_log(client: Any, store: EventStore, prefix: str = PREFIX) -> dict[str, int]:
    """Redis' category streams against the log: every event once, at its position, byte for byte."""
    from eventstore.mirror import as_text, category_key, position_of

    expected: dict[str, dict[int, bytes]] = defaultdict(dict)
    for envelope in store.read_all():
        expected[category_of(envelope.stream)][envelope.global_position] = envelope.SerializeToString()
    keys = {as_text(key) for key in client.scan_iter(match=f"{prefix}:cat:*", count=1000)}
    found: Counter[int] = Counter()
    mismatched = 0
    for category, wanted in expected.items():
        key = category_key(prefix, category)
        keys.discard(key)
        for entry_id, fields in client.xrange(key):
            position = position_of(entry_id)
            found[position] += 1
            mismatched += wanted.get(position) != fields[b"envelope"]
    log_positions = {p for wanted in expected.values() for p in wanted}
    return {
        "events_in_log": len(log_positions),
        "entries_in_redis": sum(found.values()),
        "missing": len(log_positions - set(found)),
        "duplicated": sum(count - 1 for count in found.values() if count > 1),
        "mismatched": mismatched,
        "unknown_streams": len(keys),
    }


def redis_loss(data_dir: DataDir, store: EventStore) -> dict[str, Any]:
    from domains.oona.fanout import start_mirror
    from domains.tolaria.report import new_run_id
    from eventstore.mirror import connect_redis
    from ops.mirror_health import log_reporter
    from ops.redis_server import REDIS_SERVER, PrivateRedis

    if shutil.which(REDIS_SERVER) is None:
        raise CommandError(f"the redis-loss drill needs {REDIS_SERVER} on PATH (Debian package redis-server)")
    run_id = new_run_id()
    redis_dir = data_dir.root / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    server = PrivateRedis(redis_dir)
    server.start()
    reported: list[bool] = []
    record = log_reporter(store)

    def on_health(healthy: bool, lag: int, detail: str) -> None:
        record(healthy, lag, detail)
        reported.append(healthy)

    mirror = start_mirror(
        store, server.url, data_dir.root, prefix=PREFIX, idle_timeout=0.05, on_health=on_health
    )
    outage: dict[str, int] = {}

    def fault(trainer: Any, epoch: int) -> None:
        if epoch == KILL_AFTER_EPOCH:
            server.kill()
            outage["killed_at_position"] = store.head_position()
            # the mirror notices at its next call to Redis (its housekeeping calls it every 0.25 s)
            _wait_for(lambda: reported[-1:] == [False], "the mirror noticing Redis is down")
        elif epoch == RESTART_AFTER_EPOCH:
            outage["restarted_at_position"] = store.head_position()
            server.start()  # empty: what Redis held before the kill is gone

    try:
        run = train(data_dir, store, rules.MIRROR_REDIS_DOWN, REDIS_LOSS_EPOCHS, run_id, inject=fault)
        _wait_for(lambda: reported[-1:] == [True], "the mirror catching up after Redis came back")
        down_at = first_over(run.scraper, DOWN_SERIES, 0.0)
        back_at = next(
            minute
            for minute in range(down_at, idle_until(run.scraper, len(run.scraper.scrapes)) + 1)
            if run.scraper.scrapes[minute].get(DOWN_SERIES, 0.0) == 0.0
        )
        alert = alert_of_record(store, rules.MIRROR_REDIS_DOWN)  # appends the alerts: mirrored too
        _wait_for(lambda: mirror.position == store.head_position(), "the mirror reaching the log's head")
        with connect_redis(server.url) as client:
            redis_vs_log = compare_with_log(client, store)
        reseeds = mirror.mirror.reseeds
    finally:
        mirror.stop()
        server.kill()
    # `for: 1m`: the rule fires at the second scrape that finds the mirror down
    verdict = check_alert(run.scraper, firing_at=[down_at + 1], quiet_at=[back_at])
    epochs = [e.epoch for e in events(store, "EpochCompleted") if e.run_id == run_id]
    ended = [e.event_type for e in events(store, "RunCompleted", "RunFailed") if e.run_id == run_id]
    health = [
        decode_payload(e).health == pb.HEALTH_STATUS_HEALTHY  # type: ignore[attr-defined]
        for e in events(store, "TelemetryReported")
        if e.stream == rules.MIRROR_TELEMETRY_STREAM
    ]
    lossless = redis_vs_log["missing"] == redis_vs_log["duplicated"] == redis_vs_log["mismatched"] == 0
    return {
        "run_id": run_id,
        "alert": rules.MIRROR_REDIS_DOWN,
        "fault": {
            "redis_killed_after_epoch": KILL_AFTER_EPOCH,
            "redis_restarted_empty_after_epoch": RESTART_AFTER_EPOCH,
            **outage,
            "mirror_health_in_log": ["healthy" if h else "down" for h in health],
        },
        "training_during_outage": [e for e in epochs if KILL_AFTER_EPOCH < e <= RESTART_AFTER_EPOCH],
        "alert_of_record": alert,
        "prometheus": verdict_of(verdict),
        "mirror": {"reseeds": reseeds, "error": repr(mirror.error) if mirror.error else None, **redis_vs_log},
        "recovered": ended == ["RunCompleted"] and reseeds >= 1 and lossless,
        "nominal": alert["resolved_position"] is not None and mirror.error is None,
        "checks": {
            "fault_acted": health[:1] == [False],
            "training_went_on": set(range(KILL_AFTER_EPOCH + 1, RESTART_AFTER_EPOCH + 1)) <= set(epochs),
            "alert_fired": alert["fired_position"] is not None,
            "prometheus": verdict.passed,
            "no_loss_or_duplicate": lossless,
        },
    }
