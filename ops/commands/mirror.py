"""`esper mirror --redis URL [--follow]`: mirror the log into Redis Streams and the Oona queues."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from tqdm import tqdm

from domains.oona.fanout import OonaFanout
from domains.oona.routing import OonaKeys, Thresholds
from eventstore.mirror import DEFAULT_BATCH, DEFAULT_PREFIX, REDIS_ERRORS, Mirror, connect_redis, redacted
from ops.common import add_command, check_redis_url, print_json
from ops.errors import CommandError, UsageError
from ops.storeopts import add_store_option, open_store_from_args

REDIS_ENV = "REDIS_URL"


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "mirror",
        handle,
        "mirror the event log into Redis Streams (per-category streams and the Oona queues)",
        description="Mirror every committed event into Redis Streams with the entry id <position>-0, so\n"
        "re-mirroring is idempotent: per-category streams <prefix>:cat:<category> and the Oona queues\n"
        "<prefix>:oona:{emergency,policy,normal,field_reports,overflow,telemetry}: EMERGENCY priority goes\n"
        "to emergency, Policy* to policy, FieldReportIssued to field_reports, TelemetryReported to\n"
        "telemetry, the rest to normal. Above --reroute-above pending entries normal traffic goes to\n"
        "overflow; above --drop-above telemetry is left out of the bus (never out of the log or the\n"
        "category streams). The cursor is kept in <data-dir>/mirror/. A Redis that lost its data is\n"
        "detected and reseeded from the log, and consumer groups are recreated where they had got to.\n"
        "Streams are trimmed behind their slowest group.\n"
        "Without --follow, mirrors up to the current head and exits; with it, follows the log until\n"
        "interrupted, riding out Redis outages.",
    )
    add_store_option(parser)
    parser.add_argument(
        "--redis",
        metavar="URL",
        default=None,
        help=f"Redis URL (default: ${REDIS_ENV}), e.g. redis://host:6379/0",
    )
    parser.add_argument("--follow", action="store_true", help="keep mirroring new events until interrupted")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="key prefix in Redis (default: %(default)s)")
    parser.add_argument(
        "--batch", type=int, default=DEFAULT_BATCH, help="events per Redis round trip (default: %(default)s)"
    )
    defaults = Thresholds()
    parser.add_argument(
        "--reroute-above",
        type=int,
        default=defaults.reroute_above,
        help="bus depth above which normal traffic goes to the overflow queue (default: %(default)s)",
    )
    parser.add_argument(
        "--drop-above",
        type=int,
        default=defaults.drop_above,
        help="bus depth above which telemetry is dropped from the bus (default: %(default)s)",
    )


def handle(args: argparse.Namespace) -> int:
    url = args.redis or os.environ.get(REDIS_ENV)
    if not url:
        raise UsageError(f"no Redis to mirror to: pass --redis URL or set ${REDIS_ENV}")
    if args.batch < 1:
        raise UsageError(f"--batch must be at least 1, got {args.batch}")
    try:
        thresholds = Thresholds(args.reroute_above, args.drop_above)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    check_redis_url(url)  # one rule with esper run's --redis (a malformed URL cannot be redacted)
    client = connect_redis(url)
    store = open_store_from_args(args, read_only=True)  # the mirror only reads the log
    fanout = OonaFanout(OonaKeys(args.prefix), thresholds)
    try:
        mirror = Mirror(
            store,
            client,
            args.data_dir,
            redis_url=url,
            prefix=args.prefix,
            fanout=fanout,
            batch_size=args.batch,
        )
        bar = tqdm(desc="mirrored", unit="ev", disable=args.json, file=sys.stderr)

        def progress(position: int, head: int) -> None:
            bar.total = head
            bar.update(position - bar.n)

        started_at = mirror.position
        try:
            if args.follow:
                follow_until_interrupted(mirror, progress)
            else:
                mirror.catch_up(progress=progress)
        except REDIS_ERRORS as exc:
            raise CommandError(f"cannot reach Redis at {redacted(url)} ({exc}); is it running?") from None
        finally:
            bar.close()
        summary = {
            "redis": redacted(url),
            "prefix": args.prefix,
            "position": mirror.position,
            "head": store.head_position(),
            "mirrored_from": started_at,
            "reseeds": mirror.reseeds,
            "rerouted": fanout.rerouted,
            "dropped": fanout.dropped,
            "cursor": str(mirror.cursor_path),
        }
    finally:
        store.close()
        client.close()
    if args.json:
        print_json(summary)
    else:
        print(
            f"mirrored to {summary['redis']} (prefix {args.prefix!r}) up to position {summary['position']} "
            f"of {summary['head']}; reseeds {summary['reseeds']}, rerouted {summary['rerouted']}, "
            f"dropped from the bus {summary['dropped']}"
        )
    return 0


def follow_until_interrupted(mirror: Mirror, progress: Callable[[int, int], None]) -> None:
    """Follow the log until Ctrl-C. SIGINT only sets the event the follow loop checks between batches: no
    KeyboardInterrupt is raised anywhere, so the mirror is never cut between Redis committing a batch and
    the mirror recording it, and the summary reports what Redis holds.

    (Waiting for a worker thread with Thread.join(timeout) was not enough: on Python 3.11 a
    KeyboardInterrupt landing inside join marks the still-running thread as stopped, so the next join
    returned at once and the summary was read while the worker was mid-batch: 50 vs 80 under load.)
    """
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        mirror.follow(stop, progress=progress)  # signals reach the main thread only: it owns Ctrl-C
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    try:
        mirror.follow(stop, progress=progress)
    finally:
        signal.signal(signal.SIGINT, previous)
