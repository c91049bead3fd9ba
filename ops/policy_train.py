"""`esper policy train`: rounds of short growth episodes, then a PPO update of the policy.

Each round r of a training NAME:
1. runs `--episodes` real runs (`{NAME}-r{r}-e{k}`) of the task distribution's training tasks
   (`--tasks FILE`, domains/simic/tasks.py; task, seed and epoch budget from the file, the seed drawn by
   --seed, r and k) in `--workers` worker processes on the same log, with the behaviour policy sampling:
   `--behaviour gnn` (the current version), `heuristic` (Tamiyo's heuristic with ε-exploration
   `--explore`, which records each decision's propensity) or `mixed` (episodes in pairs on the same task
   and seed: the ε-heuristic on even k, the current version on odd k);
2. rebuilds the episodes of this training's runs from the log (domains/simic/experience.py) into the replay
   buffer (size and age bounds from TrainingConfig), and runs one PPO update of the current policy on them;
3. records the result as the training candidate `{NAME}-r{r}` (domains/simic/candidates.py: its artifact
   by content hash and PolicyTrained with the parent, the update's diagnostics and the episodes' mean
   reward components), which the next round's workers run by content hash. Nothing is published: only
   the validation gate publishes, a release, and only for a candidate that passes it.
With `--clone K` a warm start comes first (domains/simic/clone.py): K ε-heuristic episodes
(`{NAME}-clone-eK`, ε from --explore), then the start policy cloned on the heuristic's own logged decisions
in them, recorded as the candidate `{NAME}-clone` (its PolicyTrained carries the clone's loss, accuracy
and entropy per head); round 0 starts from it. Resumable like the rounds.
`--validate` then runs the validation gate (ops/policy_validate.py) on the last candidate.

Rounds are events: after a kill, the same command skips every round already recorded (PolicyTrained) and
every run already completed. A killed run's episode is left out (it never completed).

Reproducibility: the update is a function of the log (a training from a copy of the log is bit-identical
on CPU: tests/simic/test_experience.py), but two trainings from scratch differ: every decision's observation
carries the controller hook's measured time (`hook_ms` in the graph's global features,
domains/tamiyo/gnn/graph.py), so the GNN's sampled actions, and the episodes after them, depend on the
machine's load. What differs is the experience, not the algorithm.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from domains.simic.tasks import TaskDistribution
from eventstore import EventStore
from leyline.datadir import DataDir
from ops.errors import CommandError, UsageError
from ops.policy_episodes import Job, run_jobs
from ops.policy_validate import add_task_options, load_tasks, print_validation, validate

if TYPE_CHECKING:
    from domains.tamiyo.gnn.network import PolicyNetwork

NAME_DEFAULT = "simic"
BEHAVIOURS = ("gnn", "heuristic", "mixed")
EXPLORE_DEFAULT = 0.2


def register_train(actions: Any, action: Any) -> None:
    train = action(actions, "train", handle_train, "train the GNN policy on rounds of short runs (Simic)")
    train.add_argument(
        "--name", default=NAME_DEFAULT, help="training name: versions NAME-rR, runs NAME-rR-eK"
    )
    train.add_argument("--from", dest="start", default="", metavar="VERSION", help="start policy (latest)")
    train.add_argument("--rounds", type=int, default=3, help="rounds of episodes and updates (default 3)")
    train.add_argument("--episodes", type=int, default=4, help="runs per round (default 4)")
    train.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the task file's)")
    train.add_argument("--seed", type=int, default=0, help="seeds the runs and the update (default 0)")
    train.add_argument(
        "--behaviour", choices=BEHAVIOURS, default="gnn", help="who acts in the episodes (default gnn)"
    )
    train.add_argument(
        "--explore", type=float, default=EXPLORE_DEFAULT, help="the heuristic's ε (default 0.2)"
    )
    train.add_argument(
        "--clone",
        type=int,
        default=0,
        metavar="K",
        help="warm start: K ε-heuristic episodes, then clone the heuristic's own logged decisions into the "
        "start policy (candidate NAME-clone) before round 0; 0: none (default 0; `esper bench learning` "
        "uses 6)",
    )
    train.add_argument("--validate", action="store_true", help="run the validation gate on the result")
    add_task_options(train)


@dataclass(frozen=True)
class TrainOptions:
    name: str
    start: str
    rounds: int
    episodes: int
    seed: int
    behaviour: str
    explore: float
    workers: int
    quiet: bool
    clone_episodes: int = 0


def options_of(args: argparse.Namespace) -> TrainOptions:
    for option in ("rounds", "episodes", "workers"):
        if getattr(args, option) < 1:
            raise UsageError(f"--{option} must be at least 1, got {getattr(args, option)}")
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {args.epochs}")
    if args.clone < 0:
        raise UsageError(f"--clone must be at least 0, got {args.clone}")
    if args.clone and not 0.0 < args.explore < 0.5:
        raise UsageError(f"--clone needs --explore within (0, 0.5), got {args.explore}")
    if not 0.0 <= args.explore <= 1.0:
        raise UsageError(f"--explore must be within [0, 1], got {args.explore}")
    return TrainOptions(
        args.name,
        args.start,
        args.rounds,
        args.episodes,
        args.seed,
        args.behaviour,
        args.explore,
        args.workers,
        args.json,
        args.clone,
    )


def behaviour_of(options: TrainOptions, k: int) -> str:
    """Who acts in episode k: "gnn" or "heuristic"."""
    if options.behaviour == "mixed":
        return "heuristic" if k % 2 == 0 else "gnn"
    return options.behaviour


def round_job(
    tasks: TaskDistribution, options: TrainOptions, r: int, k: int, run_id: str, controller: str
) -> Job:
    heuristic = behaviour_of(options, k) == "heuristic"
    index, per_round = (
        (k // 2, (options.episodes + 1) // 2) if options.behaviour == "mixed" else (k, options.episodes)
    )
    episode = tasks.train.training_episode(options.seed, r, index, per_round)
    return Job(
        run_id,
        episode.run_config("tamiyo" if heuristic else controller),
        explore=options.explore if heuristic else 0.0,
        failure_is_outcome=True,
    )


def train(
    store: EventStore, data_dir: DataDir, tasks: TaskDistribution, options: TrainOptions
) -> tuple[str, list[dict[str, Any]]]:
    """The rounds not yet in the log; returns the last version and one summary per round run now."""
    import torch

    from domains.karn.registration import register_catalogue
    from domains.simic.candidates import controller_of, record, trained_versions
    from domains.simic.config import TrainingConfig
    from domains.simic.experience import ReplayBuffer, episodes, mean_summary
    from domains.simic.gnn import GnnActorCritic, learn
    from domains.simic.ppo import make_optimizer
    from domains.tamiyo.policy_store import PolicyError, PolicyLibrary, published, published_versions, verify
    from ops.compose import keyring_for

    config = TrainingConfig(seed=options.seed)
    keyring = keyring_for(data_dir)
    library = PolicyLibrary(data_dir)
    rounds: list[dict[str, Any]] = []
    versions = published_versions(store)
    trained = trained_versions(store)
    if not versions:
        raise CommandError("no policy is published in this log; publish one with `esper policy init`")
    current = options.start or next(reversed(versions))
    if current not in versions and current not in trained:
        raise CommandError(f"unknown policy version {current!r}; `esper policy list` shows the published")

    def controller() -> str:
        return controller_of(trained[current]) if current in trained else f"gnn:{current}"

    def network_of(version: str) -> PolicyNetwork:
        if version in trained:  # the library checks the artifact's sha256
            return library.load(trained[version].content_hash)
        return verify(published(store, version), keyring, library).network

    register_catalogue(store)  # the blueprint features the graphs are rebuilt with, as `esper run` does
    if options.clone_episodes:
        version = f"{options.name}-clone"
        if version not in trained:
            try:
                network = network_of(current)
            except PolicyError as exc:
                raise CommandError(str(exc)) from None
            trained[version], summary = warm_start(store, data_dir, tasks, options, network, current, library)
            rounds.append(summary)
        current = version
    buffer = ReplayBuffer(config.replay.max_transitions, config.replay.max_age)
    for r in range(options.rounds):
        version = f"{options.name}-r{r}"
        run_ids = [f"{version}-e{k}" for k in range(options.episodes)]
        if version not in trained:
            jobs = [round_job(tasks, options, r, k, run_id, controller()) for k, run_id in enumerate(run_ids)]
            run_jobs(data_dir.root, jobs, options.workers, f"round {r}", options.quiet)
        found, descriptors = episodes(store, config.reward)
        # in episode order, not completion order: which worker finishes first must not change the update
        mine = sorted((e for e in found if e.run_id in run_ids), key=lambda e: run_ids.index(e.run_id))
        buffer.add(mine, r)
        if version in trained:
            current = version
            continue
        if not buffer.episodes:
            raise CommandError(
                f"round {r}: no episode with usable decisions (observation and propensity recorded); "
                f"see `esper audit run {run_ids[0]}`"
            )
        try:
            network = network_of(current)
        except PolicyError as exc:
            raise CommandError(str(exc)) from None
        optimizer = make_optimizer(GnnActorCritic(network), config.ppo)
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + r)
        diagnostics = learn(network, optimizer, buffer.episodes, descriptors, config.ppo, generator)
        rewards = {f"reward_{k}": v for k, v in mean_summary(mine).items()}
        metrics = {**diagnostics.to_dict(), **rewards}
        trained[version] = record(
            store,
            library,
            network,
            version=version,
            parent_version=current,
            metrics=metrics,
            steps=diagnostics.minibatch_steps,
            experiences=len(buffer),
        )
        rounds.append({"round": r, "version": version, "parent": current, "episodes": len(mine), **metrics})
        if not options.quiet:
            print(
                f"round {r}: trained {version} (reward {rewards.get('reward_total', 0.0):.3f}, "
                f"explained variance {diagnostics.explained_variance:.3f})",
                file=sys.stderr,
            )
        current = version
    return current, rounds


def warm_start(
    store: EventStore,
    data_dir: DataDir,
    tasks: TaskDistribution,
    options: TrainOptions,
    network: PolicyNetwork,
    parent: str,
    library: Any,
) -> tuple[Any, dict[str, Any]]:
    """The ε-heuristic episodes not yet in the log, then `network` cloned on the heuristic's own decisions
    in them, recorded as the candidate NAME-clone; returns its update and a summary."""
    import torch

    from domains.simic.candidates import record
    from domains.simic.clone import CloneConfig, clone, demonstrations
    from domains.simic.config import TrainingConfig
    from domains.simic.experience import episodes

    version = f"{options.name}-clone"
    run_ids = [f"{version}-e{k}" for k in range(options.clone_episodes)]
    jobs = [
        Job(
            run_id,
            tasks.train.training_episode(options.seed, -1, k, options.clone_episodes).run_config("tamiyo"),
            explore=options.explore,
            failure_is_outcome=True,
        )
        for k, run_id in enumerate(run_ids)
    ]
    run_jobs(data_dir.root, jobs, options.workers, "clone", options.quiet)
    config, training = CloneConfig(), TrainingConfig(seed=options.seed)
    found, descriptors = episodes(store, training.reward)
    mine = sorted((e for e in found if e.run_id in run_ids), key=lambda e: run_ids.index(e.run_id))
    demonstrated = demonstrations(mine, config)
    if not demonstrated:
        raise CommandError(f"warm start: no heuristic decision with an observation in {', '.join(run_ids)}")
    generator = torch.Generator().manual_seed(training.seed * 1_000_003 - 1)
    diagnostics = clone(network, demonstrated, descriptors, config, generator)
    metrics = {
        **diagnostics.to_dict(),
        **{f"clone_config_{k}": float(v) for k, v in config.to_dict().items()},
    }
    update = record(
        store,
        library,
        network,
        version=version,
        parent_version=parent,
        metrics=metrics,
        steps=diagnostics.steps,
        experiences=diagnostics.demonstrations,
    )
    if not options.quiet:
        accuracy = ", ".join(f"{h} {a:.2f}" for h, a in diagnostics.accuracy.items())
        print(
            f"warm start: cloned {version} on {len(demonstrated)} decisions (accuracy {accuracy})",
            file=sys.stderr,
        )
    return update, {"round": -1, "version": version, "parent": parent, "episodes": len(mine), **metrics}


def handle_train(args: argparse.Namespace) -> int:
    from ops.common import print_json
    from ops.storeopts import open_store_from_args

    options = options_of(args)
    tasks = load_tasks(args.tasks)
    if args.epochs is not None:
        tasks = tasks.with_epochs(args.epochs)
    data_dir = DataDir(args.data_dir)
    store = open_store_from_args(args, create=False)
    try:
        current, rounds = train(store, data_dir, tasks, options)
        validation = (
            validate(
                store,
                data_dir,
                current,
                "",
                tasks,
                name=options.name,
                workers=options.workers,
                quiet=options.quiet,
            )
            if args.validate
            else None
        )
    finally:
        store.close()
    document: dict[str, Any] = {"name": args.name, "version": current, "rounds": rounds}
    if validation is not None:
        document["validation"] = validation.to_dict()
    if args.json:
        print_json(document)
    else:
        print(f"trained {args.name}: {len(rounds)} round(s) this time, current version {current}")
        if validation is not None:
            print_validation(validation)
    return 0 if validation is None or validation.decision.passed else 1
