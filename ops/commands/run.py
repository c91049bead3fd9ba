"""`esper run`: train a host on real data under the controller, with checkpoints, resume and rollback."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from domains.tolaria.aggregate import fold, run_stream
from domains.tolaria.config import (
    DEFAULT_RANK_TIMEOUT_S,
    KNOWN_KEYS,
    ConfigError,
    RunConfig,
    build_config,
    load_config_file,
)
from domains.urza.layout import stored_hashes
from eventstore import EventFilter, EventStore
from leyline import collector
from leyline.datadir import DataDir
from ops.common import add_command, check_redis_url, print_json
from ops.errors import CommandError, UsageError
from ops.plot import add_plot_option, write_plot
from ops.run_report import print_summary, progress_bar
from ops.storeopts import add_store_option, open_store_from_args

if TYPE_CHECKING:
    from domains.tezzeret.compiler_process import CompilerProcess
    from domains.tolaria.collective import Collective
    from domains.tolaria.report import Progress, RunSummary
    from eventstore.mirror import MirrorThread

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9_]{1,32}$")

DESCRIPTION = f"""\
Train a host model while the controller may grow it, recording every event in the log.

Out of the box: cnn-lite (~670 parameters, 3 seed slots and a widening slot) on scikit-learn's bundled digits,
{RunConfig().epochs} epochs, seed 0, CPU, a checkpoint every epoch, grown by the Tamiyo controller (seeds
compiled by Tezzeret into <data-dir>/artifacts on first use); nothing is downloaded and no service is
needed. `controller = "noop"` trains without growth.

Configuration: embedded defaults, then --config FILE (.json or .toml), then the options below. Keys:
  {", ".join(KNOWN_KEYS)}.
`host` is cnn-lite, transformer-lite or module:factory (your own nn.Module with slot_specs, see
domains/tolaria/hosts.py); `dataset` is digits, fashion-mnist[:DIR] (Debian dataset-fashion-mnist),
mnist:DIR (IDX files; or $ESPER_DATASETS_DIR/mnist), austen (Debian r-cran-janeaustenr; with
transformer-lite), synthetic-images, synthetic-sequences or module:factory (returning
domains.tolaria.data.Splits); the dataset option train_limit N trains on the first N examples.

Crash-safe: after a crash or kill, `esper run --resume [--run-id ID]` loads the last committed checkpoint
and continues; on CPU the result is bit-identical to an uninterrupted run (same model_sha256).
Rollback while live: `esper rollback --run ID --to-epoch N` from another shell.
Data-parallel: --nproc-per-node N starts N ranks through torch.distributed.run (gloo on CPU, NCCL on
CUDA), or start them yourself: `torchrun --nproc-per-node N -m ops.cli run …`. Rank 0 runs the controller
and writes the log and checkpoints; every rank applies its decisions at the same epoch boundary.
--json prints one object: run_id, epochs, test_accuracy, parameters, seeds, last_position, model_sha256, …
"""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers, "run", handle, "train a host on real data, growing it under the controller", DESCRIPTION
    )
    parser.add_argument("--epochs", type=int, help=f"epochs to train (default {RunConfig().epochs})")
    parser.add_argument("--seed", type=int, help="seed of data split, batch order and weights (default 0)")
    parser.add_argument("--config", type=Path, metavar="FILE", help="a .json or .toml file of config keys")
    parser.add_argument("--run-id", metavar="ID", help="name the run (default: r + 8 random hex digits)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run named by --run-id (default: the latest run in the log) from its checkpoint",
    )
    parser.add_argument("--device", help="cpu (default), cuda or cuda:N")
    parser.add_argument(
        "--controller",
        help="tamiyo (default: grows the host), gnn[:VERSION] (Tamiyo's learned policy, see esper policy) "
        "or noop (no growth)",
    )
    parser.add_argument(
        "--explore",
        type=float,
        metavar="EPS",
        help="with probability EPS per decision the heuristic takes a uniformly drawn legal action instead "
        "of its own (default 0: off; controller tamiyo only); each decision records its propensity and "
        "observation, so Simic can learn from the run off-policy",
    )
    parser.add_argument("--host", help="cnn-lite (default), transformer-lite or module:factory")
    parser.add_argument(
        "--dataset",
        help="digits (default), fashion-mnist[:DIR], mnist:DIR, austen, synthetic-images, "
        "synthetic-sequences or module:factory",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        default=os.environ.get("REDIS_URL"),
        help="mirror the log into Redis Streams in the background while training (default: $REDIS_URL; "
        "without one nothing contacts Redis). Training never waits on Redis: whatever is not mirrored "
        "when the run ends, `esper mirror` catches up from the durable cursor.",
    )
    parser.add_argument(
        "--fsync",
        metavar="POLICY",
        default="batch",
        help="when the file log fsyncs its appends: always (each append), batch (default: once per group "
        "commit) or interval:<ms>; a PostgreSQL store (--store) makes every commit durable on its own",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="P",
        default=None,
        help="serve this process's Prometheus metrics on 127.0.0.1:P/metrics while it trains",
    )
    parser.add_argument(
        "--nproc-per-node",
        type=int,
        metavar="N",
        help="train data-parallel on N ranks of this machine, started through torch.distributed.run; "
        "each rank trains on its share of every global batch of batch_size",
    )
    parser.add_argument(
        "--rank-timeout",
        type=float,
        metavar="S",
        help="in a data-parallel run, seconds a rank waits for the others before the run fails with "
        f"RankLost (default {DEFAULT_RANK_TIMEOUT_S:g})",
    )
    add_store_option(parser)
    add_plot_option(parser)


# config keys with an option
OPTION_KEYS = ("epochs", "seed", "device", "host", "dataset", "controller", "explore")
RESUME_MAY_CHANGE = ("epochs", "device")  # what a resumed run takes from the command line


def config_values(args: argparse.Namespace) -> dict[str, Any]:
    """The config keys given: --config FILE's, then the options."""
    values: dict[str, Any] = load_config_file(args.config) if args.config else {}
    for key in OPTION_KEYS:
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    return values


def check_resumed_values(
    args: argparse.Namespace, values: dict[str, Any], recorded: RunConfig, run_id: str
) -> None:
    """A resumed run keeps its recorded config: a value given now must equal the recorded one."""
    fixed = {key: value for key, value in values.items() if key not in RESUME_MAY_CHANGE}
    given = build_config({**dataclasses.asdict(recorded), **fixed})  # checked and normalised (1 -> 1.0)
    for key, value in fixed.items():
        if getattr(given, key) != getattr(recorded, key):
            source = (
                f"--{key} {value}"
                if key in OPTION_KEYS and getattr(args, key) is not None
                else f"{key} = {value!r} in {args.config}"
            )
            raise UsageError(
                f"{source} differs from run {run_id}'s recorded {key} = {getattr(recorded, key)!r}; "
                "a resumed run keeps its recorded config"
            )


def latest_run(store: EventStore) -> str:
    run_id = ""
    for envelope in store.read_all(event_filter=EventFilter(event_types=frozenset({"RunStarted"}))):
        run_id = envelope.run_id
    if not run_id:
        raise CommandError("the log holds no run to resume; start one with `esper run`")
    return run_id


def handle(args: argparse.Namespace) -> int:
    if args.nproc_per_node is not None and "RANK" not in os.environ:
        from ops.ranks import launch

        return launch(args.nproc_per_node)
    if args.run_id is not None and not RUN_ID_PATTERN.match(args.run_id):
        raise UsageError(f"run id {args.run_id!r} must be 1–32 letters, digits or underscores")
    if args.redis:
        check_redis_url(args.redis)
    try:
        values = config_values(args)
        config = None if args.resume else build_config(values)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    compiler = start_compiler(config, DataDir.of(args.data_dir))  # before torch: overlaps its imports
    collector.pause()  # until the run is built: torch's imports make objects that live as long (collector.py)
    try:
        return train_on_ranks(args, config, values, compiler)
    finally:
        collector.resume()
        if compiler is not None:
            compiler.close()


def start_compiler(config: RunConfig | None, data_dir: DataDir) -> CompilerProcess | None:
    """The compile-ahead child of a new run whose controller names the grafts it would make first (the
    heuristic), on the process that writes the log (rank 0), in a data directory that holds no artifact
    yet; started before anything else is built, so that its first artifact is ready by the first boundary
    that may graft (tezzeret/compile_ahead.py). Where artifacts exist, the run's likely grafts are often
    among them: a child is started once the run knows that one is missing, as for a resumed run."""
    if config is None or config.controller != "tamiyo" or os.environ.get("RANK", "0") != "0":
        return None
    if stored_hashes(data_dir.artifacts):
        return None
    from domains.tezzeret.compiler_process import CompilerProcess

    return CompilerProcess.start()


def train_on_ranks(
    args: argparse.Namespace,
    config: RunConfig | None,
    values: dict[str, Any],
    compiler: CompilerProcess | None,
) -> int:
    from domains.tolaria.collective import launched  # imports torch: not at start-up
    from ops.compose import open_collective

    collective = open_collective(
        (config.device if config else args.device or recorded_device(args)) if launched() else "cpu",
        args.rank_timeout,
    )
    try:
        return train_and_report(args, config, values, collective, compiler)
    finally:
        collective.close()


def recorded_device(args: argparse.Namespace) -> str:
    """The device a run to resume was recorded with (NCCL for a CUDA run), else cpu: a run that cannot be
    found or read is reported by the resume itself."""
    from domains.tolaria.rollback import RunError
    from domains.tolaria.trainer import config_to_resume
    from eventstore.api import EventStoreError

    try:
        store = open_store_from_args(args, read_only=True)
    except (CommandError, EventStoreError):
        return "cpu"
    try:
        run_id = args.run_id or latest_run(store)
        return config_to_resume(fold(store.read_stream(run_stream(run_id))), run_id, None, None).device
    except (CommandError, EventStoreError, ConfigError, RunError):
        return "cpu"
    finally:
        store.close()


def train_and_report(
    args: argparse.Namespace,
    config: RunConfig | None,
    values: dict[str, Any],
    collective: Collective,
    compiler: CompilerProcess | None = None,
) -> int:
    """Train on this rank; rank 0 alone serves metrics, mirrors, and prints the summary."""
    from ops.ranks import open_rank_store

    leads = collective.leads
    if args.metrics_port is not None and leads:
        serve_metrics(args.metrics_port)
    store = open_rank_store(args, collective)
    mirror = start_mirror(args, store) if leads else None
    try:
        with progress_bar(args, enabled=leads) as progress:
            summary = train(args, store, config, values, progress, collective, compiler)
    finally:
        if mirror is not None:
            stop_mirror(mirror, store)
        store.close()
    if not leads:
        return 0
    if args.json:
        print_json(summary.to_json())
    else:
        print_summary(summary)
    if args.plot:
        write_plot(args, summary.run_id)
    return 0


def serve_metrics(port: int) -> None:
    """The training process's own metrics on 127.0.0.1:port, from a daemon thread, until the process ends."""
    from prometheus_client import start_http_server

    if not 0 < port < 65536:
        raise UsageError(f"--metrics-port {port} is not a TCP port (1-65535)")
    try:
        start_http_server(port, addr="127.0.0.1")
    except OSError as exc:
        raise UsageError(f"--metrics-port {port}: cannot listen ({exc.strerror})") from None


def start_mirror(args: argparse.Namespace, store: EventStore) -> MirrorThread | None:
    if not args.redis:
        return None
    from domains.oona.fanout import start_mirror as start_background_mirror
    from ops.mirror_health import log_reporter

    return start_background_mirror(
        store, args.redis, DataDir.of(args.data_dir).root, on_health=log_reporter(store)
    )


def stop_mirror(mirror: MirrorThread, store: EventStore, grace_s: float = 2.0) -> None:
    """Give the mirror a moment to reach the head (training is over), then stop it."""
    deadline = time.monotonic() + grace_s
    while mirror.is_alive() and mirror.position < store.head_position() and time.monotonic() < deadline:
        time.sleep(0.05)
    mirror.stop()
    behind = store.head_position() - mirror.position
    if mirror.error is not None:
        print(f"esper run: the Redis mirror stopped: {mirror.error}", file=sys.stderr)
    elif behind > 0:
        print(
            f"esper run: Redis mirror is {behind} events behind; `esper mirror` catches up", file=sys.stderr
        )


def train(
    args: argparse.Namespace,
    store: EventStore,
    config: RunConfig | None,
    values: dict[str, Any],
    progress: Progress,
    collective: Collective,
    compiler: CompilerProcess | None = None,
) -> RunSummary:
    # torch is imported here, not at start-up, so that `esper --help` and other commands stay quick.
    from domains.karn.registration import register_catalogue
    from domains.tolaria.checkpoint import CheckpointError
    from domains.tolaria.datasets.splits import DataUnavailable
    from domains.tolaria.report import new_run_id
    from domains.tolaria.rollback import RunError
    from domains.tolaria.trainer import config_to_resume
    from ops.compose import new_run, resume

    data_dir = DataDir.of(args.data_dir)
    try:
        if config is None:
            run_id = args.run_id or latest_run(store)
            if store.stream_version(run_stream(run_id)) == 0:
                raise CommandError(
                    f"run {run_id} does not exist in this log; check the id with `esper audit`"
                )
            recorded = config_to_resume(fold(store.read_stream(run_stream(run_id))), run_id, None, None)
            check_resumed_values(args, values, recorded, run_id)
            epochs, device = (values.get(key) for key in RESUME_MAY_CHANGE)
            trainer = resume(
                store,
                data_dir,
                run_id,
                progress=progress,
                epochs=epochs,
                device=device,
                collective=collective,
            )
        else:
            if collective.leads:  # the blueprint_catalog read model shows what the controller chose from
                register_catalogue(store)
            run_id = collective.broadcast((args.run_id or new_run_id()).encode(), 0).decode()
            trainer = new_run(
                store,
                data_dir,
                config,
                run_id,
                progress=progress,
                collective=collective,
                compiler=compiler,
            )
        collector.settle()  # built: what exists lives as long as the run, no collection scans it again
        return trainer.run()
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    except (RunError, CheckpointError, DataUnavailable) as exc:
        raise CommandError(str(exc)) from None
