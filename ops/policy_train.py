"""`esper policy train`: rounds of short growth episodes on the current policy, then a PPO update.

Each round r of a training NAME:
1. runs `--episodes` real runs (`{NAME}-r{r}-e{k}`, controller gnn:<current version>, `--epochs` epochs,
   seed derived from --seed, r and k) in `--workers` worker processes on the same log;
2. rebuilds the episodes of this training's runs from the log (domains/simic/experience.py) into the replay
   buffer (size and age bounds from TrainingConfig), and runs one PPO update of the current policy on them;
3. publishes the result as `{NAME}-r{r}` (signed PolicyPublished, parent: the current version) and appends
   PolicyTrained with the update's diagnostics and the episodes' mean reward components.

Rounds are events: after a kill, the same command skips every round already published and every run
already completed. A killed run's episode is left out (it never completed).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from ops.errors import CommandError, UsageError

NAME_DEFAULT = "simic"


def register_train(actions: Any, action: Any) -> None:
    train = action(actions, "train", handle_train, "train the GNN policy on rounds of short runs (Simic)")
    train.add_argument(
        "--name", default=NAME_DEFAULT, help="training name: versions NAME-rR, runs NAME-rR-eK"
    )
    train.add_argument("--from", dest="start", default="", metavar="VERSION", help="start policy (latest)")
    train.add_argument("--rounds", type=int, default=3, help="rounds of episodes and updates (default 3)")
    train.add_argument("--episodes", type=int, default=4, help="runs per round (default 4)")
    train.add_argument("--epochs", type=int, default=6, help="epochs per run (default 6)")
    train.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    train.add_argument("--seed", type=int, default=0, help="seeds the runs and the update (default 0)")


def _episode(data_dir: str, run_id: str, controller: str, epochs: int, seed: int) -> str:
    """One real run in a worker process; returns its run id."""
    import torch

    from domains.tolaria.config import build_config
    from eventstore import open_store
    from leyline.datadir import DataDir
    from ops.compose import new_run

    torch.set_num_threads(1)
    directory = DataDir(Path(data_dir))
    store = open_store(directory.log)
    try:
        config = build_config({"controller": controller, "epochs": epochs, "seed": seed})
        new_run(store, directory, config, run_id).run()
    finally:
        store.close()
    return run_id


def handle_train(args: argparse.Namespace) -> int:
    import torch

    from domains.karn.registration import register_catalogue
    from domains.simic.config import TrainingConfig
    from domains.simic.experience import ReplayBuffer, episodes, mean_summary
    from domains.simic.gnn import GnnActorCritic, learn
    from domains.simic.ppo import make_optimizer
    from domains.tamiyo.policy_store import (
        PolicyError,
        PolicyLibrary,
        publish,
        published,
        published_versions,
        update_of,
        verify,
    )
    from domains.tolaria.aggregate import RunStatus, fold, run_stream
    from leyline import new_envelope, pb, stream_name
    from leyline.datadir import DataDir
    from leyline.signing import Signer
    from ops.common import print_json
    from ops.compose import keyring_for
    from ops.storeopts import open_store_from_args

    for option in ("rounds", "episodes", "epochs", "workers"):
        if getattr(args, option) < 1:
            raise UsageError(f"--{option} must be at least 1, got {getattr(args, option)}")
    config = TrainingConfig(seed=args.seed)
    data_dir = DataDir(args.data_dir)
    keyring = keyring_for(data_dir)
    library = PolicyLibrary(data_dir)
    store = open_store_from_args(args, create=False)
    rounds: list[dict[str, Any]] = []
    try:
        versions = published_versions(store)
        if not versions:
            raise CommandError("no policy is published in this log; publish one with `esper policy init`")
        current = args.start or next(reversed(versions))
        if current not in versions:
            raise CommandError(f"unknown policy version {current!r}; `esper policy list` shows the published")
        register_catalogue(store)  # the blueprint features the graphs are rebuilt with, as `esper run` does
        buffer = ReplayBuffer(config.replay.max_transitions, config.replay.max_age)
        context = multiprocessing.get_context("spawn")
        for r in range(args.rounds):
            version = f"{args.name}-r{r}"
            run_ids = [f"{version}-e{k}" for k in range(args.episodes)]
            if version not in versions:
                pending = [
                    i for i in run_ids if fold(store.read_stream(run_stream(i))).status is RunStatus.ABSENT
                ]
                with ProcessPoolExecutor(min(args.workers, max(len(pending), 1)), mp_context=context) as pool:
                    jobs = [
                        pool.submit(
                            _episode,
                            str(data_dir.root),
                            run_id,
                            f"gnn:{current}",
                            args.epochs,
                            args.seed * 1_000_003 + r * 1000 + k,
                        )
                        for k, run_id in enumerate(run_ids)
                        if run_id in pending
                    ]
                    for job in jobs:
                        try:
                            print(f"round {r}: episode {job.result()} done", file=sys.stderr)
                        except Exception as exc:  # a worker's failure, reported in one line
                            raise CommandError(f"round {r}: an episode failed: {exc}") from None
            found, descriptors = episodes(store, config.reward)
            mine = [e for e in found if e.run_id in run_ids]
            buffer.add(mine, r)
            if version in versions:
                current = version
                continue
            if not buffer.episodes:
                raise CommandError(f"round {r}: no episode completed; see `esper audit run {run_ids[0]}`")
            try:
                network = verify(published(store, current), keyring, library).network
            except PolicyError as exc:
                raise CommandError(str(exc)) from None
            optimizer = make_optimizer(GnnActorCritic(network), config.ppo)
            generator = torch.Generator().manual_seed(config.seed * 1_000_003 + r)
            diagnostics = learn(network, optimizer, buffer.episodes, descriptors, config.ppo, generator)
            envelope = publish(
                store, library, Signer(keyring), network, version=version, parent_version=current
            )
            rewards = {f"reward_{k}": v for k, v in mean_summary(mine).items()}
            metrics = {**diagnostics.to_dict(), **rewards}
            update = pb.PolicyUpdate()
            update.CopyFrom(update_of(envelope))
            update.training_metrics.update(metrics)
            trained = pb.PolicyTrained(
                update=update, steps=diagnostics.minibatch_steps, experiences=len(buffer)
            )
            store.append(
                [new_envelope("PolicyTrained", stream_name("policy", version), trained, source="simic")]
            )
            versions[version] = envelope
            rounds.append(
                {"round": r, "version": version, "parent": current, "episodes": len(mine), **metrics}
            )
            print(
                f"round {r}: published {version} (reward {rewards.get('reward_total', 0.0):.3f})",
                file=sys.stderr,
            )
            current = version
    finally:
        store.close()
    document = {"name": args.name, "version": current, "rounds": rounds}
    if args.json:
        print_json(document)
    else:
        print(f"trained {args.name}: {len(rounds)} round(s) this time, current version {current}")
    return 0
