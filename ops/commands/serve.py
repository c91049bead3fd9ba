"""`esper serve`: metrics, health, the JSON API and the dashboard over HTTP, read-only (SPEC §11-12).

Bound to a loopback address (the default) no token is needed; bound to any other address the server
refuses to start without a bearer token from $ESPER_SERVE_TOKEN or --token-file, and then every request
must carry it. The read models are caught up with the log before the first request and follow it while
the server runs, and so does Nissa: the alert conditions evaluated on the log append AlertFired and
AlertResolved events, each also POSTed to --webhook and appended to --alert-file when given.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from domains.nissa.routing import Channel, FileChannel, Router, WebhookChannel
from ops.common import add_command, print_json
from ops.dbopts import add_db_option, db_url, open_db_from_args
from ops.errors import UsageError
from ops.storeopts import add_store_option, open_store_from_args

TOKEN_ENV = "ESPER_SERVE_TOKEN"
DEFAULT_PORT = 8642
DEFAULT_BIND = "127.0.0.1"


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "serve",
        handle,
        "serve metrics, health, the JSON API and the dashboard; reads only",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT}; 0: any)"
    )
    parser.add_argument("--bind", default=DEFAULT_BIND, help=f"address to listen on (default {DEFAULT_BIND})")
    parser.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help=f"file holding the bearer token (default: ${TOKEN_ENV}); required off loopback",
    )
    parser.add_argument(
        "--redis", metavar="URL", default=None, help="a Redis to report in /health ($REDIS_URL)"
    )
    parser.add_argument(
        "--es", metavar="URL", default=None, help="an Elasticsearch to report in /health ($ESPER_ES_URL)"
    )
    parser.add_argument(
        "--webhook", metavar="URL", default=None, help="POST each alert of record here as JSON"
    )
    parser.add_argument(
        "--alert-file", type=Path, default=None, help="append each alert of record to FILE as a JSON line"
    )
    parser.add_argument(
        "--no-alerts", action="store_true", help="do not evaluate alerts of record (another server does)"
    )
    add_store_option(parser)
    add_db_option(parser)


def alert_channels(args: argparse.Namespace) -> list[Channel]:
    channels: list[Channel] = []
    if args.webhook:
        channels.append(WebhookChannel(args.webhook))
    if args.alert_file is not None:
        channels.append(FileChannel(args.alert_file))
    return channels


def read_token(args: argparse.Namespace) -> str | None:
    if args.token_file is not None:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            raise UsageError(f"cannot read --token-file {args.token_file}: {exc.strerror}") from None
        if not token:
            raise UsageError(f"--token-file {args.token_file} is empty")
        return token
    return os.environ.get(TOKEN_ENV) or None


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def handle(args: argparse.Namespace) -> int:
    # imported here: the server and Nissa load the read models (SQLAlchemy), which `esper serve --help`
    # need not pay for
    from domains.nissa.service import Nissa
    from ops.serve.routes import ServeContext
    from ops.serve.server import Follower, Server, is_loopback

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a TCP port (0-65535)")
    token = read_token(args)
    if token is None and not is_loopback(args.bind):
        raise UsageError(
            f"refusing to serve on {args.bind} without a bearer token: set ${TOKEN_ENV} or pass --token-file"
        )
    store = open_store_from_args(args, create=False)
    engine = open_db_from_args(args)
    ctx = ServeContext(
        data_dir=Path(args.data_dir),
        db_url=db_url(args),
        store=store,
        engine=engine,
        redis_url=args.redis or os.environ.get("REDIS_URL"),
        es_url=args.es or os.environ.get("ESPER_ES_URL"),
    )
    try:
        follower = Follower(ctx)
        head = follower.catch_up()
        try:
            server = Server(ctx, args.bind, args.port, token)
        except OSError as exc:
            raise UsageError(f"cannot listen on {args.bind}:{args.port}: {exc.strerror}") from None
        follower.start()
        if not args.no_alerts:
            nissa = Nissa(store, Router(alert_channels(args)))
            threading.Thread(target=nissa.follow, args=(ctx.stopping,), name="nissa", daemon=True).start()
        host = f"[{args.bind}]" if ":" in args.bind else args.bind
        url = f"http://{host}:{server.port}/"
        if args.json:
            print_json({"url": url, "port": server.port, "head": head, "token_required": token is not None})
        else:
            print(f"serving {url} (read models at position {head}); Ctrl-C stops")
        sys.stdout.flush()
        signal.signal(signal.SIGTERM, _stop)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            ctx.stopping.set()
            server.server_close()
            follower.thread.join(timeout=5)
    finally:
        ctx.stopping.set()
        store.close()
        engine.dispose()
    return 0
