"""`esper demo learning`, end to end in one data directory:

1. an untrained policy `demo-init` is published (the active policy);
2. training rounds (ops/policy_train.py, `--behaviour mixed`): per round, pairs of episodes on the same
   training task and seed, the ε-heuristic (ε 0.2, propensities recorded) and the current policy, then a
   PPO update on the episodes whose decisions are usable off-policy (observation and propensity recorded);
3. the validation gate (ops/policy_validate.py) on the held-out tasks against `demo-init` and the heuristic;
   a passed candidate is published as the release `demo-v1`;
4. a live run (a worker process, on the first held-out task, `gnn:demo-init`) receives the activation of the
   release after its first epoch, as `esper policy activate` delivers it, and hot-reloads it at an epoch
   boundary; its decisions after that name the release;
5. a markdown report and a PNG learning curve (ops/demo_report.py).

Everything is in the log: running the same command again resumes (rounds, runs and the release are not
made twice).
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

from domains.simic.outcomes import READ, Wanted, held_out_runs
from domains.simic.reward import RewardConfig
from domains.simic.tasks import TaskDistribution
from eventstore import EventFilter, EventStore
from leyline import decode_payload, pb
from leyline.datadir import DataDir
from ops.errors import CommandError
from ops.policy_episodes import Job, run_job
from ops.policy_train import TrainOptions, behaviour_of, train
from ops.policy_validate import Validation, load_tasks, validate

NAME = "demo"
INITIAL = "demo-init"
LIVE_RUN = "demo-live"
EXPLORE = 0.2
LIVE_TIMEOUT_S = 600.0  # the live run's whole budget; it ends long before on any machine we run on


@dataclass(frozen=True)
class Budget:
    rounds: int
    episodes: int  # per round, in heuristic/GNN pairs
    epochs: int  # per training and held-out episode
    live_epochs: int


# default: the task file's 16-epoch episodes, in which a graft completes (tasks.toml); tiny and small are
# smoke budgets in which no seed finishes its lifecycle
BUDGETS = {"tiny": Budget(1, 2, 3, 8), "small": Budget(2, 4, 4, 16), "default": Budget(4, 6, 16, 24)}


@dataclass(frozen=True)
class RoundFigures:
    round: int
    version: str
    gnn_reward: float
    heuristic_reward: float
    metrics: dict[str, float]


@dataclass(frozen=True)
class LiveRun:
    run_id: str
    release: str
    activated_epoch: int | None
    reason: str
    decisions: list[tuple[int, str]]  # (epoch, policy version) of each decision, in order

    def versions_after(self) -> set[str]:
        if self.activated_epoch is None:
            return set()
        return {v for epoch, v in self.decisions if epoch >= self.activated_epoch}


def initial_policy(store: EventStore, data_dir: DataDir, seed: int) -> None:
    from domains.tamiyo.gnn.network import initial_network
    from domains.tamiyo.policy_store import PolicyLibrary, publish, published_versions
    from leyline.signing import Signer
    from ops.compose import keyring_for

    if INITIAL not in published_versions(store):
        network = initial_network(seed)
        publish(store, PolicyLibrary(data_dir), Signer(keyring_for(data_dir)), network, version=INITIAL)


def trained_metrics(store: EventStore, name: str) -> dict[str, dict[str, float]]:
    """Each round version's PolicyTrained metrics (diagnostics and reward components), from the log."""
    found: dict[str, dict[str, float]] = {}
    for envelope in store.read_all(event_filter=EventFilter(event_types=frozenset({"PolicyTrained"}))):
        payload = decode_payload(envelope)
        assert isinstance(payload, pb.PolicyTrained)
        if payload.update.version.startswith(f"{name}-r"):
            found[payload.update.version] = dict(payload.update.training_metrics)
    return found


def round_figures(store: EventStore, options: TrainOptions) -> list[RoundFigures]:
    """Per round, the mean run reward (`reward.run_return`) of the GNN's and the ε-heuristic's episodes."""
    wanted = {
        f"{options.name}-r{r}-e{k}": Wanted(behaviour_of(options, k), f"r{r}", r)
        for r in range(options.rounds)
        for k in range(options.episodes)
    }
    runs = held_out_runs(store.read_all(event_filter=READ), wanted, RewardConfig())
    metrics = trained_metrics(store, options.name)

    def mean(arm: str, r: int) -> float:
        values = [run.reward for run in runs if run.arm == arm and run.seed == r and run.completed]
        return sum(values) / len(values) if values else float("nan")

    return [
        RoundFigures(
            r,
            f"{options.name}-r{r}",
            mean("gnn", r),
            mean("heuristic", r),
            metrics.get(f"{options.name}-r{r}", {}),
        )
        for r in range(options.rounds)
    ]


def _events(store: EventStore, run_id: str, types: frozenset[str]) -> list[tuple[str, Any]]:
    return [
        (e.event_type, decode_payload(e))
        for e in store.read_all(event_filter=EventFilter(event_types=types))
        if e.run_id == run_id
    ]


def _wait_for(
    store: EventStore,
    run_id: str,
    types: frozenset[str],
    match: Callable[[str, Any], bool],
    process: BaseProcess,
) -> Any:
    """The first event of the run that `match` accepts; None once the run's process has ended without it."""
    deadline = time.monotonic() + LIVE_TIMEOUT_S
    while time.monotonic() < deadline:
        ended = not process.is_alive()
        for event_type, payload in _events(store, run_id, types):
            if match(event_type, payload):
                return payload
        if ended:
            return None
        time.sleep(0.05)
    raise CommandError(f"live run {run_id} did not end within {LIVE_TIMEOUT_S:g} s")


def live_run(
    store: EventStore, data_dir: DataDir, tasks: TaskDistribution, release: str, epochs: int
) -> LiveRun:
    """A run on `demo-init` that hot-reloads `release` at an epoch boundary after its first epoch."""
    from domains.tamiyo import policy_control
    from domains.tamiyo.policy_store import published

    episode = tasks.held_out.all_episodes(1)[0]
    config = {**episode.run_config(f"gnn:{INITIAL}"), "epochs": epochs}
    activation: pb.PolicyActivation | None = None
    reason = ""
    already = _events(store, LIVE_RUN, frozenset({"RunStarted"}))
    if not already:
        process = multiprocessing.get_context("spawn").Process(
            target=run_job, args=(str(data_dir.root), Job(LIVE_RUN, config))
        )  # not a daemon: a run may start processes of its own (compile-ahead)
        process.start()
        try:
            types = frozenset({"EpochCompleted", "RunCompleted", "RunFailed"})
            first = _wait_for(store, LIVE_RUN, types, lambda t, p: True, process)
            if not isinstance(first, pb.EpochCompleted):
                raise CommandError(
                    f"live run {LIVE_RUN} ended before its first epoch (exit code {process.exitcode}); "
                    f"see `esper audit run {LIVE_RUN}`"
                )
            request = policy_control.deliver(
                data_dir, LIVE_RUN, policy_control.ACTIVATE, release, published(store, release)
            )
            activation = _wait_for(
                store,
                LIVE_RUN,
                frozenset({"PolicyActivated", "PolicyRolledBack"}),
                lambda t, p: request.request_id in p.reason,
                process,
            )
        finally:
            process.join(LIVE_TIMEOUT_S)
    for event_type, payload in _events(store, LIVE_RUN, frozenset({"PolicyActivated", "PolicyRolledBack"})):
        if payload.version == release or payload.previous_version == release:
            activation, reason = payload, f"{event_type}: {payload.reason}"
    decisions = [
        (p.epoch, p.policy_version) for _, p in _events(store, LIVE_RUN, frozenset({"DecisionMade"}))
    ]
    activated = activation.epoch if activation is not None and activation.version == release else None
    return LiveRun(LIVE_RUN, release, activated, reason, decisions)


@dataclass(frozen=True)
class DemoResult:
    budget: Budget
    rounds: list[RoundFigures]
    validation: Validation
    live: LiveRun | None
    wall_s: float


def run_demo(data_dir: DataDir, budget: Budget, workers: int, seed: int, quiet: bool) -> DemoResult:
    from eventstore import open_store

    began = time.perf_counter()
    tasks = load_tasks(None).with_epochs(budget.epochs)
    options = TrainOptions(
        NAME, INITIAL, budget.rounds, budget.episodes, seed, "mixed", EXPLORE, workers, quiet
    )
    data_dir.create()
    store = open_store(data_dir.log)
    try:
        initial_policy(store, data_dir, seed)
        candidate, _ = train(store, data_dir, tasks, options)
        validation = validate(
            store, data_dir, candidate, INITIAL, tasks, name=NAME, workers=workers, quiet=quiet
        )
        live = (
            live_run(store, data_dir, tasks, validation.release, budget.live_epochs)
            if validation.decision.passed
            else None
        )
        figures = round_figures(store, options)
    finally:
        store.close()
    return DemoResult(budget, figures, validation, live, time.perf_counter() - began)
