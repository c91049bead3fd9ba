"""`esper policy init|list|show VERSION|activate VERSION --run ID|rollback --run ID`: learned policies."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from domains.tamiyo import policy_control
from domains.tolaria.aggregate import RunStatus, fold, run_stream
from eventstore import EventStore
from eventstore.api import EventFilter
from leyline import decode_payload, pb
from leyline.datadir import DataDir
from leyline.signing import Signer
from ops.common import add_command, print_json
from ops.errors import CommandError, UsageError
from ops.policy_train import register_train
from ops.policy_validate import register_validate
from ops.storeopts import add_store_option, open_store_from_args

DESCRIPTION = """\
Tamiyo's learned (GNN) policies: content-addressed artifacts under <data-dir>/policies, published by a
signed PolicyPublished event, activated in a live run without restarting it.

  esper policy init [--seed S] [--version V]    publish an untrained policy whose weights depend on S only
  esper policy list                             published versions and where they are active
  esper policy show VERSION                     one version: hash, signature and artifact checks, history
  esper policy activate VERSION --run ID        the live run verifies it off the training thread and
                                                activates it at its next epoch boundary (a training
                                                round NAME-rR is refused: activate its release)
  esper policy rollback --run ID                the live run returns to its previous good version
  esper policy train [--rounds R --episodes N]  Simic: rounds of short runs of the task distribution
      [--tasks FILE] [--behaviour gnn|heuristic]  (--tasks, TOML; default: the bundled one), a PPO update,
      [--validate]                                the result published as NAME-rR; --validate gates it
  esper policy validate VERSION [--against V]   the validation gate on held-out tasks (≥ 5 seeds) against
                                                the active policy and the heuristic, chaos checks and an
                                                off-policy estimate; PolicyValidated and the release
                                                NAME-vK, or PolicyRejected with the reasons (exit 1)

Delivery is the same as `esper rollback`: a control file under <data-dir>/control that the run reads at
each epoch boundary (pass the run's --data-dir). An unknown version, a bad artifact hash or a bad signature
is refused here, in one line (exit 1); the run verifies again and refuses with PolicyRolledBack.
Start a run on a policy with `esper run --controller gnn[:VERSION]` (no VERSION: the latest published).
"""
# The policy store and the network import torch and torch-geometric: the handlers import them, so that
# `esper --help` and the other commands stay fast (tests/test_cli.py).

HISTORY_TYPES = frozenset({"PolicyActivated", "PolicyRolledBack"})


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers, "policy", handle_missing_action, "Tamiyo's learned policies", DESCRIPTION
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    init = _action(actions, "init", handle_init, "publish an untrained, seeded policy")
    init.add_argument("--seed", type=int, default=0, help="weights depend on this seed only (default 0)")
    init.add_argument("--version", default="", help="version name (default gnn-<hash prefix>)")
    init.add_argument("--hidden", type=int, default=None, help="hidden width (default: NetworkConfig's)")
    _action(actions, "list", handle_list, "published versions and where they are active")
    show = _action(actions, "show", handle_show, "one version: checks and history")
    show.add_argument("version", metavar="VERSION")
    activate = _action(actions, "activate", handle_activate, "activate a version in a live run")
    activate.add_argument("version", metavar="VERSION")
    activate.add_argument("--run", required=True, metavar="ID", help="the run")
    activate.add_argument("--wait", type=float, default=0.0, metavar="S", help="wait for the run to act")
    rollback = _action(actions, "rollback", handle_rollback, "return a live run to its previous version")
    rollback.add_argument("--run", required=True, metavar="ID", help="the run")
    rollback.add_argument("--wait", type=float, default=0.0, metavar="S", help="wait for the run to act")
    register_train(actions, _action)
    register_validate(actions, _action)


def _action(actions: Any, name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = actions.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help="the data directory")
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine output")
    add_store_option(parser)
    parser.set_defaults(handler=handler)
    return parser


def handle_missing_action(args: argparse.Namespace) -> int:
    raise UsageError("choose an action: init, list, show VERSION, activate VERSION or rollback")


def _emit(args: argparse.Namespace, document: dict[str, Any], line: str) -> int:
    if args.json:
        print_json(document)
    else:
        print(line)
    return 0


def handle_init(args: argparse.Namespace) -> int:
    from domains.tamiyo.gnn.network import NetworkConfig, initial_network
    from domains.tamiyo.policy_store import PolicyError, PolicyLibrary, publish, update_of
    from ops.compose import keyring_for

    if args.hidden is not None and args.hidden < 1:
        raise UsageError(f"--hidden must be positive, got {args.hidden}")
    hidden = NetworkConfig().hidden if args.hidden is None else args.hidden
    data_dir = DataDir(args.data_dir)
    store = open_store_from_args(args, create=True)
    try:
        network = initial_network(args.seed, NetworkConfig(hidden=hidden, head_hidden=hidden))
        library = PolicyLibrary(data_dir)
        signer = Signer(keyring_for(data_dir))
        try:
            envelope = publish(store, library, signer, network, version=args.version or None)
        except PolicyError as exc:
            raise CommandError(str(exc)) from None
    finally:
        store.close()
    update = update_of(envelope)
    document = {"version": update.version, "content_hash": update.content_hash, "path": update.artifact_path}
    return _emit(
        args, document, f"published policy {update.version} ({update.content_hash[:12]}, seed {args.seed})"
    )


def _activity(store: EventStore) -> dict[str, list[str]]:
    """Runs in which each version is active now."""
    runs: dict[str, str] = {}
    for envelope in store.read_all(event_filter=EventFilter(event_types=HISTORY_TYPES)):
        payload = decode_payload(envelope)
        assert isinstance(payload, pb.PolicyActivation)
        runs[envelope.run_id] = payload.version
    active: dict[str, list[str]] = {}
    for run_id, version in runs.items():
        active.setdefault(version, []).append(run_id)
    return active


def handle_list(args: argparse.Namespace) -> int:
    from domains.tamiyo.policy_store import published_versions, update_of

    store = open_store_from_args(args, create=False)
    try:
        versions = published_versions(store)
        active = _activity(store)
    finally:
        store.close()
    rows: list[dict[str, Any]] = []
    for version, envelope in versions.items():
        update = update_of(envelope)
        rows.append(
            {
                "version": version,
                "content_hash": update.content_hash,
                "parent_version": update.parent_version,
                "lora": update.lora,
                "created_at_ms": update.created_at_ms,
                "active_in": sorted(active.get(version, [])),
            }
        )
    if args.json:
        print_json({"policies": rows})
        return 0
    if not rows:
        print("no policy published; `esper policy init` publishes an untrained one")
    for row in rows:
        runs = ", ".join(row["active_in"]) or "-"
        print(
            f"{row['version']:<24} {row['content_hash'][:12]}  "
            f"lora={str(row['lora']).lower():<5}  active in: {runs}"
        )
    return 0


def _checked(store: EventStore, data_dir: DataDir, version: str) -> pb.EventEnvelope:
    """The version's publication, its signature, artifact hash and shapes checked; CommandError if not."""
    from domains.tamiyo.policy_store import (
        PolicyError,
        PolicyLibrary,
        check_signature,
        deserialize,
        published,
    )
    from ops.compose import keyring_for

    try:
        envelope = published(store, version)
        update = check_signature(envelope, keyring_for(data_dir))
        deserialize(PolicyLibrary(data_dir).read(update.content_hash))
    except PolicyError as exc:
        raise CommandError(str(exc)) from None
    return envelope


def handle_show(args: argparse.Namespace) -> int:
    from domains.tamiyo.policy_store import update_of

    data_dir = DataDir(args.data_dir)
    store = open_store_from_args(args, create=False)
    try:
        envelope = _checked(store, data_dir, args.version)
        history = [
            (e.event_type, e.run_id, decode_payload(e))
            for e in store.read_all(event_filter=EventFilter(event_types=HISTORY_TYPES))
        ]
    finally:
        store.close()
    update = update_of(envelope)
    events = [
        {
            "event": kind,
            "run_id": run_id,
            "version": p.version,
            "previous": p.previous_version,
            "epoch": p.epoch,
            "reason": p.reason,
        }
        for kind, run_id, p in history
        if isinstance(p, pb.PolicyActivation) and args.version in (p.version, p.previous_version)
    ]
    document = {
        "version": update.version,
        "content_hash": update.content_hash,
        "artifact_path": update.artifact_path,
        "parent_version": update.parent_version,
        "lora": update.lora,
        "signature": f"ok (key {envelope.key_id})",
        "artifact": "ok",
        "history": events,
    }
    if args.json:
        print_json(document)
        return 0
    print(f"policy {update.version}: sha256 {update.content_hash}, {update.artifact_path}")
    print(f"  signature ok (key {envelope.key_id}); artifact hash, schema and shapes ok")
    for event in events:
        print(f"  {event['event']:<17} run {event['run_id']} epoch {event['epoch']}: {event['reason']}")
    return 0


def _gated(store: EventStore, version: str) -> None:
    """A training round's version (it has PolicyTrained) goes live only through the validation gate: its
    release is what a run activates."""
    from domains.tamiyo.policy_store import CATEGORY
    from leyline import stream_name

    types = {e.event_type for e in store.read_stream(stream_name(CATEGORY, version))}
    if "PolicyTrained" in types:
        raise CommandError(
            f"{version} is a training candidate, not a release; `esper policy validate {version}` gates it "
            "and publishes the release to activate"
        )


def _live_run(store: EventStore, run_id: str) -> None:
    status = fold(store.read_stream(run_stream(run_id))).status
    if status is RunStatus.ABSENT:
        raise CommandError(f"no run {run_id!r} in this log")
    if status is not RunStatus.RUNNING:
        raise CommandError(f"run {run_id} is {status.value}; only a running run takes a policy change")


def _wait(store: EventStore, run_id: str, request_id: str, timeout: float) -> pb.PolicyActivation | None:
    deadline = time.monotonic() + timeout
    while True:
        for envelope in store.read_all(event_filter=EventFilter(event_types=HISTORY_TYPES)):
            payload = decode_payload(envelope)
            if (
                envelope.run_id == run_id
                and isinstance(payload, pb.PolicyActivation)
                and request_id in payload.reason
            ):
                return payload
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


def _deliver(args: argparse.Namespace, action: str) -> int:
    from domains.tamiyo.policy_store import run_policies

    data_dir = DataDir(args.data_dir)
    store = open_store_from_args(args, create=False)
    try:
        if action == policy_control.ACTIVATE:
            _gated(store, args.version)
        _live_run(store, args.run)
        if action == policy_control.ACTIVATE:
            envelope = _checked(store, data_dir, args.version)
            request = policy_control.deliver(data_dir, args.run, action, args.version, envelope)
        else:
            active, good = run_policies(store, args.run)
            if not good:
                raise CommandError(
                    f"run {args.run} has no earlier good policy to roll back to (active: {active or '-'})"
                )
            request = policy_control.deliver(data_dir, args.run, action, good[-1])
        outcome = _wait(store, args.run, request.request_id, args.wait) if args.wait > 0 else None
    finally:
        store.close()
    document: dict[str, Any] = {
        "run_id": args.run,
        "action": action,
        "version": request.version,
        "request_id": request.request_id,
        "status": "requested",
    }
    if outcome is not None:
        document.update(status="done", active=outcome.version, reason=outcome.reason)
    if args.wait > 0 and outcome is None:
        raise CommandError(f"run {args.run} did not act on the request within {args.wait:g} s; is it live?")
    line = (
        f"{action} of policy {request.version} requested for run {args.run} ({request.request_id}); "
        "the live run applies it at its next epoch boundary"
        if outcome is None
        else f"run {args.run}: policy {outcome.version} active ({outcome.reason})"
    )
    return _emit(args, document, line)


def handle_activate(args: argparse.Namespace) -> int:
    return _deliver(args, policy_control.ACTIVATE)


def handle_rollback(args: argparse.Namespace) -> int:
    return _deliver(args, policy_control.ROLLBACK)
