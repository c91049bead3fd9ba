"""The composition root of a run: every collaborator of Tolaria's Trainer is built here, and only here.

    store = open_run_store(args, fsync="batch")              # the event log, with its fsync policy
    trainer = new_run(store, DataDir(root), config, run_id)  # or resume(store, data_dir, run_id)
    summary = trainer.run()

builds, in order: the keyring (environment, else `<data-dir>/keys.json`), one `Verifier` for the process,
the module source (`module_source`: compile-or-load, Tezzeret over Urza's library), the
workload (seeded data, host and optimizer), Kasmina on the host's slots, and the controller the config
names (Tamiyo's heuristic, her learned GNN policy, or the no-op), then hands them to `Trainer`. Domain
classes receive their collaborators; none constructs another domain's.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Collection
from pathlib import Path

from domains.karn.approval import approved_in
from domains.karn.blueprint import Use
from domains.kasmina import Kasmina, KasminaConfig, ModuleSource
from domains.tamiyo.catalogue import heuristic_controller
from domains.tamiyo.config import HeuristicConfig
from domains.tamiyo.controller import TamiyoController
from domains.tamiyo.gnn.topology import host_topology
from domains.tezzeret.compile_ahead import CompileAhead
from domains.tezzeret.compiler_process import CompilerProcess, StoreAddress
from domains.tezzeret.jobs import choose_strategy
from domains.tezzeret.service import Tezzeret
from domains.tezzeret.source import STRATEGY_VARIABLE, SeedModuleSource, default_device
from domains.tolaria.aggregate import RunStatus, fold, run_stream
from domains.tolaria.boundary import BoundaryClock
from domains.tolaria.collective import Collective, SingleProcess, launched
from domains.tolaria.config import DEFAULT_RANK_TIMEOUT_S, ConfigError, RunConfig
from domains.tolaria.hosts import count_parameters
from domains.tolaria.report import Progress
from domains.tolaria.rollback import RunError
from domains.tolaria.trainer import Trainer, config_to_resume
from domains.tolaria.workload import Workload, build_workload
from domains.urza.library import ArtifactLibrary
from eventstore import EventStore
from eventstore.file import FileStore, FsyncPolicy
from leyline.controller import Controller, NoOpController
from leyline.datadir import DataDir
from leyline.signing import Keyring, Signer, Verifier
from ops.errors import UsageError
from ops.storeopts import open_store_from_args, store_location


def open_run_store(args: argparse.Namespace, fsync: str, create: bool = True) -> EventStore:
    """The run's event log (`--store` URL, else `<data-dir>/log`); the file store appends under the fsync
    policy `esper run --fsync` names (PostgreSQL makes every commit durable on its own)."""
    try:
        FsyncPolicy.parse(fsync)
    except ValueError as exc:
        raise UsageError(f"--fsync: {exc}") from None
    options = {"fsync": fsync} if isinstance(store_location(args), Path) else {}
    return open_store_from_args(args, create=create, **options)


def module_source(
    store: EventStore,
    data_dir: DataDir,
    *,
    use: Use = Use.LIVE,
    approved: Collection[str] = (),
    cache_size: int = 128,
    strategy: str | None = None,
    device: str | None = None,
) -> SeedModuleSource:
    """Compile-or-load over Urza's library under `<data-dir>/artifacts`, with the compile strategy chosen
    (default $ESPER_COMPILE_STRATEGY, else auto) for the device the seeds run on (default: cuda if any)."""
    library = ArtifactLibrary(data_dir.artifacts, store, cache_size)
    selection = strategy or os.environ.get(STRATEGY_VARIABLE, "auto")
    chosen = choose_strategy(selection, device or default_device())
    return SeedModuleSource(library, Tezzeret(store, library), use, approved, chosen)


def store_address(store: EventStore) -> StoreAddress | None:
    """Where another process opens this log (compiling ahead), or None for a store it cannot reopen."""
    if isinstance(store, FileStore):
        return StoreAddress(str(store.path))
    from eventstore.postgres import PostgresStore  # SQLAlchemy, only for a PostgreSQL log

    if isinstance(store, PostgresStore):
        return StoreAddress(store.url.render_as_string(hide_password=False), {"schema": store.schema})
    return None


def compile_ahead(ahead: CompileAhead, controller: Controller, kasmina: Kasmina, parameters: int) -> None:
    """Start compiling the grafts the controller would make first, at the slots' kinds and shapes."""
    grafts = []
    if isinstance(controller, TamiyoController):
        grafts = controller.likely_grafts(parameters, kasmina.config.lifecycle)
    ahead.start(
        [
            (blueprint_id, values, kasmina.slots[slot].kind, kasmina.slots[slot].shape)
            for blueprint_id, values, slot in grafts
        ]
    )


def run_approvals(store: EventStore, run_id: str) -> frozenset[str]:
    """The experimental blueprints approved before the run started: a resumed run chooses from the
    catalogue it started with, whatever was approved since."""
    first = store.read_stream(run_stream(run_id), limit=1)
    return approved_in(store, first[0].global_position if first else None)


def open_collective(device: str, timeout_s: float | None = None) -> Collective:
    """The run's ranks: torch.distributed when torchrun (or its variables) started several, else the one
    process. A CUDA run places each rank on the device of its LOCAL_RANK."""
    if not launched():
        return SingleProcess()
    import torch

    from domains.tolaria.distributed import TorchCollective

    local = int(os.environ.get("LOCAL_RANK", "0"))
    rank_device = torch.device("cuda", local) if device.startswith("cuda") else torch.device("cpu")
    return TorchCollective(rank_device, timeout_s or DEFAULT_RANK_TIMEOUT_S)


def rank_config(config: RunConfig, collective: Collective) -> RunConfig:
    """The config a rank trains with: a CUDA run's rank on its own device."""
    if collective.world_size == 1 or not config.device.startswith("cuda"):
        return config
    return dataclasses.replace(config, device=f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")


def keyring_for(data_dir: DataDir) -> Keyring:
    """The signing keys: from the environment, else the data directory's own keyring."""
    return Keyring.for_data_dir(data_dir)


def build_controller(
    name: str,
    run_id: str,
    kasmina: Kasmina,
    keyring: Keyring,
    config_json: str = "",
    *,
    store: EventStore | None = None,
    data_dir: DataDir | None = None,
    workload: Workload | None = None,
    explore: float = 0.0,
    approved: Collection[str] = (),
) -> tuple[Controller, str]:
    """The controller a config names (RunConfig has checked the name) and its own configuration as JSON
    (the one recorded in RunStarted when resuming, else the defaults with `explore` as the heuristic's ε):
    noop, tamiyo (the heuristic) or gnn[:VERSION] (Tamiyo's learned policy: the named published version,
    else the latest one; gnn:trained:SHA256 runs a training candidate, never published, by content hash)."""
    if name == "noop":
        return NoOpController(), ""
    recorded = HeuristicConfig.from_json(config_json) if config_json else None
    config = recorded or HeuristicConfig(exploration_epsilon=explore)
    slots = {slot.slot: (slot.kind, slot.shape) for slot in kasmina.slots.values()}
    kind, _, version = name.partition(":")
    if kind != "gnn":
        topology = None
        if config.exploration_epsilon > 0:  # an exploring decision records the graph of the host
            if workload is None:
                raise ConfigError("exploration needs the run's host to record each decision's graph")
            topology = host_topology(workload.model, workload.splits.input_shape)
        controller = heuristic_controller(run_id, Signer(keyring), slots, config, topology, approved)
        return controller, config.to_json()
    if store is None or data_dir is None or workload is None:
        raise ConfigError("controller gnn needs the run's event log, data directory and host")
    # torch-geometric is imported only by runs that use the learned policy
    from domains.simic.candidates import TRAINED
    from domains.simic.candidates import resolve as resolve_candidate
    from domains.tamiyo.gnn.build import gnn_controller, resolve_policy
    from domains.tamiyo.policy_store import PolicyError, PolicyLibrary

    try:
        if version.startswith(TRAINED):  # a training candidate, by content hash (domains/simic/candidates.py)
            initial = resolve_candidate(store, PolicyLibrary(data_dir), keyring, version[len(TRAINED) :])
        else:
            initial = resolve_policy(store, PolicyLibrary(data_dir), keyring, version or None)
    except PolicyError as exc:
        raise ConfigError(f"controller {name}: {exc}") from None
    model, shape = workload.model, workload.splits.input_shape
    return gnn_controller(run_id, keyring, model, shape, slots, initial, data_dir, config), config.to_json()


def build_kasmina(
    run_id: str,
    config: RunConfig,
    workload: Workload,
    source: ModuleSource,
    verifier: Verifier,
    kasmina_config: KasminaConfig | None = None,
    clock: BoundaryClock | None = None,
) -> Kasmina:
    """Kasmina on the host's slots; in a data-parallel run on the clock the ranks share at boundaries."""
    # the run's last epoch: Kasmina refuses a germination whose lifecycle cannot finish by then, and its
    # seeds' learning rates follow the run's schedule up to it
    kasmina_config = dataclasses.replace(
        kasmina_config or KasminaConfig(), run_epochs=config.epochs, lr_schedule=config.lr_schedule
    )
    try:
        if clock is None:
            kasmina = Kasmina(run_id, workload.model, source, verifier, kasmina_config)
        else:
            kasmina = Kasmina(run_id, workload.model, source, verifier, kasmina_config, clock_ms=clock)
    except ValueError as exc:
        raise ConfigError(f"host {config.host!r}: {exc}; call spec.slot_factory at its slots") from None
    kasmina.attach_optimizer(workload.optimizer)
    return kasmina


def build_trainer(
    config: RunConfig,
    run_id: str,
    store: EventStore,
    data_dir: DataDir,
    *,
    controller: Controller | None = None,
    source: ModuleSource | None = None,
    keyring: Keyring | None = None,
    progress: Progress | None = None,
    kasmina_config: KasminaConfig | None = None,
    controller_config_json: str = "",
    collective: Collective | None = None,
    compiler: CompilerProcess | None = None,
) -> Trainer:
    """A Trainer with every collaborator built; the given ones (tests, benches) replace the defaults.
    `compiler` is a compile-ahead child started early (`esper run` starts it before importing torch);
    one this run does not use is closed here.

    In a data-parallel run, a rank other than 0 gets no controller of its own (it applies rank 0's
    decisions) and compiles nothing ahead: it loads the seeds rank 0 compiled and writes nothing."""
    collective = collective or SingleProcess()
    data_dir.create()  # private (0700/0600) whatever the umask, before the first file under it
    keyring = keyring or keyring_for(data_dir)
    verifier = Verifier(keyring)  # one per process: a nonce seen once is seen by every check
    workload = build_workload(rank_config(config, collective))
    approved = run_approvals(store, run_id)
    if not collective.leads:
        controller = NoOpController()
    address = store_address(store) if source is None and collective.leads else None
    ahead = (
        None
        if address is None
        else CompileAhead(
            module_source(store, data_dir, approved=approved), address, data_dir.artifacts, compiler
        )
    )
    if ahead is None and compiler is not None:
        compiler.close()
    clock = BoundaryClock(collective.leads) if collective.world_size > 1 else None
    kasmina = build_kasmina(
        run_id,
        config,
        workload,
        ahead or source or module_source(store, data_dir, approved=approved),
        verifier,
        kasmina_config,
        clock,
    )
    if controller is None:
        controller, controller_config_json = build_controller(
            config.controller,
            run_id,
            kasmina,
            keyring,
            controller_config_json,
            store=store,
            data_dir=data_dir,
            workload=workload,
            explore=config.explore,
            approved=approved,
        )
    if ahead is not None:  # off the training thread, before the first boundary may graft
        compile_ahead(ahead, controller, kasmina, count_parameters(workload.model))
    return Trainer(
        config,
        run_id,
        store,
        data_dir,
        workload,
        kasmina,
        controller,
        Signer(keyring),
        verifier,
        progress,
        controller_config_json,
        closing=() if ahead is None else (ahead.close,),
        collective=collective,
        boundary_clock=clock,
    )


def new_run(
    store: EventStore,
    data_dir: DataDir,
    config: RunConfig,
    run_id: str,
    controller: Controller | None = None,
    progress: Progress | None = None,
    collective: Collective | None = None,
    compiler: CompilerProcess | None = None,
) -> Trainer:
    """A new run, recorded with RunStarted (by rank 0 of a data-parallel run)."""
    collective = collective or SingleProcess()
    if collective.leads and fold(store.read_stream(run_stream(run_id))).status is not RunStatus.ABSENT:
        raise RunError(f"run {run_id} already exists in this log; resume it with --resume --run-id {run_id}")
    trainer = build_trainer(
        config,
        run_id,
        store,
        data_dir,
        controller=controller,
        progress=progress,
        collective=collective,
        compiler=compiler,
    )
    trainer.start()
    return trainer


def resume(
    store: EventStore,
    data_dir: DataDir,
    run_id: str,
    controller: Controller | None = None,
    progress: Progress | None = None,
    epochs: int | None = None,
    device: str | None = None,
    keyring: Keyring | None = None,
    collective: Collective | None = None,
) -> Trainer:
    """The run continued from its log and last committed checkpoint (every rank reads the log before
    rank 0 writes to it)."""
    collective = collective or SingleProcess()
    state = fold(store.read_stream(run_stream(run_id)))
    collective.barrier(state.epoch)
    config = config_to_resume(state, run_id, epochs, device)
    trainer = build_trainer(
        config,
        run_id,
        store,
        data_dir,
        controller=controller,
        progress=progress,
        # the lifecycle limits and the controller's configuration the run started with
        kasmina_config=KasminaConfig(lifecycle=state.lifecycle) if state.lifecycle else None,
        controller_config_json=state.controller_config_json,
        keyring=keyring,
        collective=collective,
    )
    trainer.resume(state)
    return trainer
