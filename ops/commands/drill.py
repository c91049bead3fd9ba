"""`esper drill NAME`: a fault drill. A short real run (cnn-lite on digits) with one fault injected, then
the proof that the system saw it and came back:

- the alert of record: Nissa, evaluating the drill's log, appends AlertFired for the fault and, after the
  recovery, AlertResolved;
- the Prometheus rule: the run's own metrics, sampled from this process at every epoch as a server
  scraping once a minute would, are handed to `promtool test rules` with the alert expected firing while
  the fault acts and not firing at the end;
- recovery and nominal state: what the drill's subsystem did about it, read back from the log.

Drills:
  controller-timeout  the controller's policy stalls past its decision timeout for the first epochs: each
                      decision becomes a safe no-op, the end-of-epoch hook overruns its budget
                      (training_latency_high); then the policy answers in time again.
  compile-failure     Tezzeret's first attempts of every compile job fail and are retried
                      (tezzeret_compile_retry_high) until the job succeeds and the seed is grafted; the
                      successful compile resolves the alert.
  disk-full           the artifacts' file system is full (ENOSPC) for the first writes: compile jobs fail
                      and are retried (tezzeret_compile_retry_high) until space is freed and one succeeds,
                      which resolves the alert.
  loss-explosion      the learning rate spikes 10,000x after a checkpoint: the next epoch's loss explodes,
                      the guard rolls back to the checkpoint (training_loss_explosion), training goes on.
  isolation           the first seed grafted closes over a host parameter and leaks gradient into it
                      (kasmina_isolation_violation); Kasmina culls it after 3 violations.
  redis-loss          the run mirrors to a redis-server of the drill's own, which is SIGKILLed mid-run
                      (mirror_redis_down) while training goes on, then restarted empty: the mirror
                      re-mirrors from the log; Redis then holds every event exactly once.

The drill runs in a fresh data directory (removed afterwards unless --keep). Exit 0 when every check
passed, 1 when one did not (the JSON names it).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from domains.nissa import conditions, rules
from domains.tolaria.aggregate import GUARD
from eventstore import EventStore, open_store
from leyline import decode_payload, pb
from leyline.datadir import DataDir
from ops.common import add_command, print_json
from ops.drill_redis import redis_loss
from ops.drill_support import (
    alert_of_record,
    events,
    first_over,
    first_rise,
    idle_until,
    train,
    verdict_of,
)
from ops.prometheus.evaluate import Scraper, check_alert

STALLED_EPOCHS = 6  # epochs the controller stalls in (controller-timeout)
CALM_EPOCHS = rules.HOOK_WINDOW + 2  # epochs after: the stream's hook window refills with punctual hooks
DECISION_TIMEOUT_S = 0.25
QUIET_AFTER = 6  # minutes (scrapes) after the stall until the rule's 5-minute window has left it
COMPILE_FAILURES = 4  # failed attempts per job: more retries than the rule allows within its window
# Long enough for a seed germinated at the first chance to finish its lifecycle: Tamiyo does not germinate,
# and Kasmina refuses, a seed whose verdict would come after the run's last epoch.
COMPILE_EPOCHS = 14
EXPLOSION_AFTER_EPOCH = 4  # the learning rate spikes after this epoch's checkpoint
LEARNING_RATE_SPIKE = 1e4
EXPLOSION_EPOCHS = 10
ISOLATION_EPOCHS = 14


# ---------------------------------------------------------------- controller-timeout


def controller_timeout(data_dir: DataDir, store: EventStore) -> dict[str, Any]:
    from domains.tamiyo.catalogue import karn_descriptors
    from domains.tamiyo.config import HeuristicConfig
    from domains.tamiyo.controller import TamiyoController
    from domains.tamiyo.policy import HeuristicPolicy
    from domains.tolaria.report import new_run_id
    from leyline.signing import Signer
    from ops.compose import keyring_for
    from ops.drill_faults import StallingPolicy

    run_id = new_run_id()
    # The fault is the stalled decision alone: a policy that never grows, so no graft (its compile and
    # first admission) slows a hook in the calm window that must show the alert resolving.
    still = HeuristicPolicy(HeuristicConfig(max_concurrent_seeds=0))
    policy = StallingPolicy(still, STALLED_EPOCHS, 20 * DECISION_TIMEOUT_S)
    controller = TamiyoController(
        run_id,
        Signer(keyring_for(data_dir)),
        policy,
        decision_timeout_s=DECISION_TIMEOUT_S,
        catalogue=karn_descriptors(),
    )
    epochs = STALLED_EPOCHS + CALM_EPOCHS
    run = train(data_dir, store, rules.TRAINING_LATENCY_HIGH, epochs, run_id, controller=controller)
    decisions = [decode_payload(e) for e in events(store, "DecisionMade") if e.run_id == run_id]
    stalled = [d.epoch for d in decisions if "timeout" in d.reason]  # type: ignore[attr-defined]
    overruns = [e.epoch for e in events(store, "EpochHookOverrun") if e.run_id == run_id]
    calm = decisions[STALLED_EPOCHS:]
    alert = alert_of_record(store, conditions.instance(rules.TRAINING_LATENCY_HIGH, run_id))
    # at minute STALLED_EPOCHS the rule's window holds stalled hooks; QUIET_AFTER minutes later, punctual ones
    verdict = check_alert(run.scraper, firing_at=[STALLED_EPOCHS], quiet_at=[STALLED_EPOCHS + QUIET_AFTER])
    return {
        "run_id": run_id,
        "alert": rules.TRAINING_LATENCY_HIGH,
        "fault": {"decisions_timed_out_at_epochs": stalled, "hook_overruns_at_epochs": overruns},
        "alert_of_record": alert,
        "prometheus": verdict_of(verdict),
        "recovered": bool(calm) and all("timeout" not in d.reason for d in calm),  # type: ignore[attr-defined]
        "nominal": alert["resolved_position"] is not None,
        "checks": {
            "fault_acted": stalled == list(range(1, STALLED_EPOCHS + 1)),
            "alert_fired": alert["fired_position"] is not None,
            "prometheus": verdict.passed,
        },
    }


# ---------------------------------------------------------------- compile-failure


def _compile_drill(data_dir: DataDir, store: EventStore, fault: str, full_disk: bool) -> dict[str, Any]:
    """Compile attempts fail (the compiler raises, or the artifacts' disk is full) and are retried until
    the job succeeds and the seed it was for is grafted.

    Time passes while a job is failing: Tezzeret waits out its backoff between attempts (seconds to
    minutes with its default backoff). The drill keeps its waits short and has Prometheus scrape once in
    each, so the rule sees the job failing, then the compile that succeeded after the retries."""
    from domains.karn.blueprint import Use
    from domains.tamiyo.config import HeuristicConfig
    from domains.tezzeret.jobs import Backoff, choose_strategy
    from domains.tezzeret.service import FailFirst, Tezzeret
    from domains.tezzeret.source import SeedModuleSource
    from domains.tolaria.report import new_run_id
    from domains.urza.library import ArtifactLibrary
    from ops.drill_faults import FullDiskLibrary

    run_id = new_run_id()
    scraper = Scraper(rules.TEZZERET_COMPILE_RETRY_HIGH)

    def backoff_wait(seconds: float) -> None:
        scraper.scrape()
        time.sleep(seconds)

    if full_disk:
        library: ArtifactLibrary = FullDiskLibrary(data_dir.artifacts, store, refused_writes=COMPILE_FAILURES)
    else:
        library = ArtifactLibrary(data_dir.artifacts, store)
    tezzeret = Tezzeret(
        store,
        library,
        max_attempts=COMPILE_FAILURES + 1,
        backoff=Backoff(base_ms=20),
        sleep=backoff_wait,
        failure_hook=None if full_disk else FailFirst(COMPILE_FAILURES),
    )
    source = SeedModuleSource(library, tezzeret, Use.LIVE, (), choose_strategy("auto", "cpu"))
    eager = HeuristicConfig(plateau_window=1, plateau_epsilon=1.0)  # germinate at the first chance
    run = train(
        data_dir,
        store,
        rules.TEZZERET_COMPILE_RETRY_HIGH,
        COMPILE_EPOCHS,
        run_id,
        scraper=scraper,
        source=source,
        controller_config_json=eager.to_json(),
    )
    failed = [decode_payload(e) for e in events(store, "CompileJobFailed")]
    succeeded = events(store, "CompileJobSucceeded")
    grafted = [e for e in events(store, "SeedGrafted") if e.run_id == run_id]
    retrying_at = first_over(run.scraper, "esper_tezzeret_compile_retries_total", rules.RETRY_THRESHOLD)
    recovered_at = first_over(run.scraper, "esper_tezzeret_last_success_timestamp_seconds", 0.0)
    alert = alert_of_record(store, rules.TEZZERET_COMPILE_RETRY_HIGH)
    verdict = check_alert(run.scraper, firing_at=[retrying_at], quiet_at=[recovered_at])
    errors = sorted({f.error for f in failed})  # type: ignore[attr-defined]
    return {
        "run_id": run_id,
        "alert": rules.TEZZERET_COMPILE_RETRY_HIGH,
        "fault": {
            "injected": fault,
            "failed_attempts": len(failed),
            "retried": sum(f.will_retry for f in failed),  # type: ignore[attr-defined]
            "errors": errors,
        },
        "alert_of_record": alert,
        "prometheus": verdict_of(verdict),
        "recovered": bool(succeeded) and bool(grafted),
        # resolved on the recovery evidence (a compile succeeded after the retries), not after a window
        "nominal": alert["resolved_position"] is not None,
        "checks": {
            "fault_acted": len(failed) >= COMPILE_FAILURES,
            "alert_fired": alert["fired_position"] is not None,
            "prometheus": verdict.passed,
        },
    }


def compile_failure(data_dir: DataDir, store: EventStore) -> dict[str, Any]:
    return _compile_drill(data_dir, store, "the compiler raises on the first attempts", full_disk=False)


def disk_full(data_dir: DataDir, store: EventStore) -> dict[str, Any]:
    return _compile_drill(data_dir, store, "ENOSPC writing artifacts until space is freed", full_disk=True)


# ---------------------------------------------------------------- loss-explosion


def loss_explosion(data_dir: DataDir, store: EventStore) -> dict[str, Any]:
    from domains.tolaria.report import new_run_id

    run_id = new_run_id()
    spiked: list[int] = []

    def spike(trainer: Any, epoch: int) -> None:
        if epoch == EXPLOSION_AFTER_EPOCH and not spiked:  # once: the rollback restores the optimizer
            for group in trainer.optimizer.param_groups:
                group["lr"] *= LEARNING_RATE_SPIKE
            spiked.append(epoch)

    run = train(data_dir, store, rules.TRAINING_LOSS_EXPLOSION, EXPLOSION_EPOCHS, run_id, inject=spike)
    requests = [decode_payload(e) for e in events(store, "RollbackRequested") if e.run_id == run_id]
    completed = [e for e in events(store, "RollbackCompleted") if e.run_id == run_id]
    ended = [e.event_type for e in events(store, "RunCompleted", "RunFailed") if e.run_id == run_id]
    exploded_at = first_rise(run.scraper)
    quiet_at = idle_until(run.scraper, exploded_at + rules.EXPLOSION_WINDOW_S // 60 + 1)
    alert = alert_of_record(store, conditions.instance(rules.TRAINING_LOSS_EXPLOSION, run_id))
    verdict = check_alert(run.scraper, firing_at=[exploded_at], quiet_at=[quiet_at])
    return {
        "run_id": run_id,
        "alert": rules.TRAINING_LOSS_EXPLOSION,
        "fault": {
            "learning_rate_spiked_after_epoch": spiked,
            "rollbacks_requested": [r.reason for r in requests],  # type: ignore[attr-defined]
        },
        "alert_of_record": alert,
        "prometheus": verdict_of(verdict),
        "recovered": bool(completed) and ended == ["RunCompleted"],
        "nominal": alert["resolved_position"] is not None,
        "checks": {
            "fault_acted": any(r.requested_by == GUARD for r in requests),  # type: ignore[attr-defined]
            "alert_fired": alert["fired_position"] is not None,
            "prometheus": verdict.passed,
        },
    }


# ---------------------------------------------------------------- isolation


def isolation(data_dir: DataDir, store: EventStore) -> dict[str, Any]:
    from domains.tamiyo.config import HeuristicConfig
    from domains.tolaria.report import new_run_id
    from ops.compose import module_source
    from ops.drill_faults import LeakingSource

    run_id = new_run_id()
    host: list[Any] = []

    def remember_host(trainer: Any, epoch: int) -> None:
        if not host:
            host.append(next(trainer.model.parameters()))

    source = LeakingSource(module_source(store, data_dir), lambda: host[0])
    eager = HeuristicConfig(plateau_window=1, plateau_epsilon=1.0)  # germinate at the first chance
    run = train(
        data_dir,
        store,
        rules.KASMINA_ISOLATION_VIOLATION,
        ISOLATION_EPOCHS,
        run_id,
        inject=remember_host,
        source=source,
        controller_config_json=eager.to_json(),
    )
    violations = [
        decode_payload(e) for e in events(store, "IsolationViolationDetected") if e.run_id == run_id
    ]
    culled = [
        e
        for e in events(store, "SeedTransitioned")
        if e.run_id == run_id and decode_payload(e).to_stage == pb.SEED_STAGE_CULLED  # type: ignore[attr-defined]
    ]
    leaked_at = first_rise(run.scraper)
    quiet_at = idle_until(run.scraper, leaked_at + 6)
    alert = alert_of_record(store, conditions.instance(rules.KASMINA_ISOLATION_VIOLATION, run_id))
    verdict = check_alert(run.scraper, firing_at=[leaked_at], quiet_at=[quiet_at])
    return {
        "run_id": run_id,
        "alert": rules.KASMINA_ISOLATION_VIOLATION,
        "fault": {"violations": [(v.slot, v.parameter) for v in violations]},  # type: ignore[attr-defined]
        "alert_of_record": alert,
        "prometheus": verdict_of(verdict),
        "recovered": bool(culled),
        "nominal": alert["resolved_position"] is not None,
        "checks": {
            "fault_acted": bool(violations),
            "alert_fired": alert["fired_position"] is not None,
            "prometheus": verdict.passed,
        },
    }


DRILLS: dict[str, Callable[[DataDir, EventStore], dict[str, Any]]] = {
    "compile-failure": compile_failure,
    "controller-timeout": controller_timeout,
    "disk-full": disk_full,
    "isolation": isolation,
    "loss-explosion": loss_explosion,
    "redis-loss": redis_loss,
}


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "drill",
        handle,
        "fault drills: a short run with a fault injected, its alert, recovery and return to nominal",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument("name", choices=sorted(DRILLS), metavar="NAME", help=", ".join(sorted(DRILLS)))
    parser.add_argument("--keep", action="store_true", help="keep the drill's data directory and print it")


def run_drill(name: str, root: Path) -> dict[str, Any]:
    data_dir = DataDir(root)
    store = open_store(data_dir.log)
    try:
        report = DRILLS[name](data_dir, store)
    finally:
        store.close()
    report["passed"] = all(report["checks"].values()) and report["recovered"] and report["nominal"]
    return {"drill": name, **report}


def _where(record: dict[str, int | None], key: str) -> str:
    position = record[f"{key}_position"]
    if position is None:
        return "-"
    epoch = record[f"{key}_at_epoch"]
    return f"log position {position}" + (f" (epoch {epoch})" if epoch is not None else "")


def handle(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix=f"esper-drill-{args.name}-"))
    try:
        report = run_drill(args.name, root)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if args.keep:
        report["data_dir"] = str(root)
    if args.json:
        print_json(report)
    else:
        state = "passed" if report["passed"] else "FAILED"
        print(f"drill {args.name}: {state} (run {report['run_id']}, alert {report['alert']})")
        record = report["alert_of_record"]
        print(
            f"  alert of record: fired at {_where(record, 'fired')}, resolved at {_where(record, 'resolved')}"
        )
        for check, ok in {
            **report["checks"],
            "recovered": report["recovered"],
            "nominal": report["nominal"],
        }.items():
            print(f"  {check:14} {'ok' if ok else 'NO'}")
    return 0 if report["passed"] else 1
