"""The composition root of a run: every collaborator of Tolaria's Trainer is built here, and only here.

    store = open_run_store(args, fsync="batch")              # the event log, with its fsync policy
    trainer = new_run(store, DataDir(root), config, run_id)  # or resume(store, data_dir, run_id)
    summary = trainer.run()

builds, in order: the keyring (environment, else `<data-dir>/keys.json`), one `Verifier` for the process,
the module source (compile-or-load, Tezzeret over Urza's library under `<data-dir>/artifacts`), the
workload (seeded data, host and optimizer), Kasmina on the host's slots, and the controller the config
names (Tamiyo's heuristic, her learned GNN policy, or the no-op), then hands them to `Trainer`. Domain
classes receive their collaborators; none constructs another domain's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from domains.kasmina import Kasmina, KasminaConfig, ModuleSource
from domains.tamiyo.catalogue import heuristic_controller
from domains.tamiyo.gnn.build import gnn_controller, resolve_policy
from domains.tamiyo.policy_store import PolicyError, PolicyLibrary
from domains.tezzeret.source import SeedModuleSource
from domains.tolaria.aggregate import RunStatus, fold, run_stream
from domains.tolaria.config import ConfigError, RunConfig
from domains.tolaria.trainer import Progress, RunError, Trainer, config_to_resume
from domains.tolaria.workload import Workload, build_workload
from eventstore import EventStore
from leyline.controller import Controller, NoOpController
from leyline.datadir import DataDir
from leyline.signing import Keyring, Signer, Verifier
from ops.storeopts import open_store_from_args, store_location


def open_run_store(args: argparse.Namespace, fsync: str) -> EventStore:
    """The run's event log (`--store` URL, else `<data-dir>/log`); the file store appends under the fsync
    policy `esper run --fsync` names (PostgreSQL makes every commit durable on its own)."""
    options = {"fsync": fsync} if isinstance(store_location(args), Path) else {}
    return open_store_from_args(args, create=True, **options)


def keyring_for(data_dir: DataDir) -> Keyring:
    """The signing keys: from the environment, else the data directory's own keyring."""
    return Keyring.from_env() or Keyring.load_or_create(data_dir.keys)


def build_controller(
    name: str,
    run_id: str,
    kasmina: Kasmina,
    keyring: Keyring,
    *,
    store: EventStore | None = None,
    data_dir: DataDir | None = None,
    workload: Workload | None = None,
) -> Controller:
    """The controller a config names (RunConfig has checked the name): noop, tamiyo (the heuristic) or
    gnn[:VERSION] (Tamiyo's learned policy: the named published version, else the latest one)."""
    if name == "noop":
        return NoOpController()
    slots = {slot.slot: (slot.kind, slot.shape) for slot in kasmina.slots.values()}
    kind, _, version = name.partition(":")
    if kind != "gnn":
        return heuristic_controller(run_id, Signer(keyring), slots)
    if store is None or data_dir is None or workload is None:
        raise ConfigError("controller gnn needs the run's event log, data directory and host")
    try:
        initial = resolve_policy(store, PolicyLibrary(data_dir), keyring, version or None)
    except PolicyError as exc:
        raise ConfigError(f"controller {name}: {exc}") from None
    shape = workload.splits.input_shape
    return gnn_controller(run_id, keyring, workload.model, shape, slots, initial, data_dir)


def build_kasmina(
    run_id: str,
    config: RunConfig,
    workload: Workload,
    source: ModuleSource,
    verifier: Verifier,
    kasmina_config: KasminaConfig | None = None,
) -> Kasmina:
    try:
        kasmina = Kasmina(run_id, workload.model, source, verifier, kasmina_config)
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
) -> Trainer:
    """A Trainer with every collaborator built; the given ones (tests, benches) replace the defaults."""
    keyring = keyring or keyring_for(data_dir)
    verifier = Verifier(keyring)  # one per process: a nonce seen once is seen by every check
    workload = build_workload(config)
    kasmina = build_kasmina(
        run_id, config, workload, source or SeedModuleSource.open(store, data_dir), verifier, kasmina_config
    )
    controller = controller or build_controller(
        config.controller, run_id, kasmina, keyring, store=store, data_dir=data_dir, workload=workload
    )
    return Trainer(config, run_id, store, data_dir, workload, kasmina, controller, verifier, progress)


def new_run(
    store: EventStore,
    data_dir: DataDir,
    config: RunConfig,
    run_id: str,
    controller: Controller | None = None,
    progress: Progress | None = None,
) -> Trainer:
    """A new run, recorded with RunStarted."""
    if fold(store.read_stream(run_stream(run_id))).status is not RunStatus.ABSENT:
        raise RunError(f"run {run_id} already exists in this log; resume it with --resume --run-id {run_id}")
    trainer = build_trainer(config, run_id, store, data_dir, controller=controller, progress=progress)
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
) -> Trainer:
    """The run continued from its log and last committed checkpoint."""
    state = fold(store.read_stream(run_stream(run_id)))
    config = config_to_resume(state, run_id, epochs, device)
    trainer = build_trainer(config, run_id, store, data_dir, controller=controller, progress=progress)
    trainer.resume(state)
    return trainer
