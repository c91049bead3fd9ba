"""`esper rollback --run ID --to-epoch N`: ask a live run to roll back at its next epoch boundary."""

from __future__ import annotations

import argparse
import getpass
import time
from typing import Any

from domains.tolaria import control
from domains.tolaria.aggregate import (
    RequestRollback,
    RollbackRejected,
    decide_rollback,
    fold,
    mode_name,
    run_stream,
)
from leyline import decode_payload, pb
from leyline.datadir import DataDir
from leyline.signing import Keyring, Signer
from ops.common import add_command, print_json
from ops.errors import CommandError, UsageError
from ops.storeopts import add_store_option, open_store_from_args

DESCRIPTION = """\
Ask a run to roll back to the committed checkpoint of epoch N, without restarting it.

Delivery: the request is checked against the run's log (the run exists, is running, and has a committed
checkpoint at epoch N), signed with the run's keyring (ESPER_SIGNING_KEYS / ESPER_SIGNING_KEY_FILE, else
<data-dir>/keys.json) and written atomically to <data-dir>/control/rollback-<ID>.request. The live run
looks for that file at every epoch boundary, verifies its signature and checks the epoch against its
committed checkpoints (a request that fails either is recorded as CommandRejected and the run goes on),
appends RollbackRequested to the log, restores the checkpoint (from its in-memory cache of recent
checkpoints when it holds it, otherwise from disk) and appends RollbackCompleted; projections then show
the run as of epoch N. Pass the same --data-dir as the run. A request is fresh for 60 s: a run that is
not live refuses it as stale when resumed; ask again then.
With --wait S the command waits up to S seconds for RollbackCompleted and reports it.
"""


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers, "rollback", handle, "roll a live run back to an earlier epoch's checkpoint", DESCRIPTION
    )
    parser.add_argument("--run", required=True, metavar="ID", help="the run to roll back")
    parser.add_argument("--to-epoch", required=True, type=int, metavar="N", help="epoch to return to")
    parser.add_argument("--reason", default="operator request", help="recorded in RollbackRequested")
    parser.add_argument("--wait", type=float, default=0.0, metavar="S", help="wait for the rollback to land")
    add_store_option(parser)


def handle(args: argparse.Namespace) -> int:
    if args.to_epoch < 0:
        raise UsageError(f"--to-epoch must be non-negative, got {args.to_epoch}")
    store = open_store_from_args(args, create=False)
    try:
        stream = run_stream(args.run)
        state = fold(store.read_stream(stream))
        request = RequestRollback(args.run, args.to_epoch, f"operator:{getpass.getuser()}", args.reason)
        try:
            rollback = decide_rollback(state, request)
        except RollbackRejected as exc:
            raise CommandError(str(exc)) from None
        data_dir = DataDir.of(args.data_dir)
        keyring = Keyring.existing_for_data_dir(data_dir)
        if keyring is None:
            raise CommandError(
                f"no signing key to sign the request with: {data_dir.keys} does not exist and neither "
                "ESPER_SIGNING_KEYS nor ESPER_SIGNING_KEY_FILE is set (use the run's keys)"
            )
        envelope = control.signed_request(Signer(keyring), rollback)
        control.deliver(data_dir, envelope)
        request_id = envelope.event_id
        completed = wait_for_completion(store, stream, request_id, args.wait) if args.wait > 0 else None
    finally:
        store.close()
    document: dict[str, Any] = {
        "run_id": args.run,
        "target_epoch": args.to_epoch,
        "request_id": request_id,
        "status": "completed" if completed else "requested",
    }
    if completed is not None:
        document.update(
            mode=mode_name(completed.mode),
            duration_ms=round(completed.duration_ms, 3),
            target_position=completed.target_position,
        )
    if args.json:
        print_json(document)
    elif completed is not None:
        print(
            f"run {args.run} rolled back to epoch {completed.target_epoch} "
            f"({document['mode']}, {completed.duration_ms:.0f} ms); see `esper audit run {args.run}`"
        )
    else:
        print(
            f"rollback of run {args.run} to epoch {args.to_epoch} requested ({request_id}); "
            "the live run applies it at its next epoch boundary"
        )
    if args.wait > 0 and completed is None:
        raise CommandError(
            f"run {args.run} did not complete the rollback within {args.wait:g} s; is it live?"
        )
    return 0


def wait_for_completion(
    store: Any, stream: str, request_id: str, timeout: float
) -> pb.RollbackCompleted | None:
    """The RollbackCompleted that follows our RollbackRequested in the run's stream, polled until timeout."""
    deadline = time.monotonic() + timeout
    while True:
        requested = False
        for envelope in store.read_stream(stream):
            if envelope.event_id == request_id:
                requested = True
            elif requested and envelope.event_type == "RollbackCompleted":
                payload = decode_payload(envelope)
                assert isinstance(payload, pb.RollbackCompleted)
                return payload
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)
