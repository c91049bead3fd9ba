"""`esper run` on several ranks: started again under torch.distributed.run, and each rank's event log.

`esper run --nproc-per-node N …` runs `python -m torch.distributed.run --standalone … -m ops.cli run …`
(the same options less --nproc-per-node); each rank then builds its collective from torchrun's variables
(ops/compose.py) and opens the log: rank 0 for writing (creating it for a new run), the others read-only
once rank 0 has opened it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from domains.tolaria.collective import Collective
from eventstore import EventStore
from ops.compose import open_run_store
from ops.errors import UsageError
from ops.storeopts import open_store_from_args

MAX_RANKS = 64


def launch(nproc: int) -> int:
    """This same command again, as `nproc` ranks under torch.distributed.run; its exit status."""
    if not 1 <= nproc <= MAX_RANKS:
        raise UsageError(f"--nproc-per-node {nproc}: give 1 to {MAX_RANKS} ranks")
    argv, skip = [], False
    for arg in sys.argv[1:]:
        if skip or arg.startswith("--nproc-per-node"):
            skip = arg == "--nproc-per-node"
            continue
        argv.append(arg)
    # the agent stops the other ranks once one fails: it looks every 2 s, so that a rank that saw the
    # failure first records RunFailed, naming the lost rank, before the agent's SIGTERM
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--monitor-interval=2"]
    launcher.append(f"--nproc-per-node={nproc}")
    return subprocess.run([*launcher, "-m", "ops.cli", *argv], check=False).returncode


def open_rank_store(args: argparse.Namespace, collective: Collective) -> EventStore:
    """Rank 0's log opened as `esper run` opens it; another rank's read-only, once rank 0's is open."""
    if not collective.leads:
        collective.barrier(0)
        return open_store_from_args(args, read_only=True)
    store = open_run_store(args, args.fsync, create=not args.resume)
    collective.barrier(0)
    return store
