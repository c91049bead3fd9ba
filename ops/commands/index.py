"""`esper index --es URL [--follow]`: the log's events into Elasticsearch (SPEC §11-12).

One document per event with `_id` = event_id (indexing again is idempotent), under an index template
with the events' mappings. A durable cursor in <data-dir>/index/ (per server and index) is saved after each
acknowledged bulk request: a killed indexer resumes from it. --follow keeps indexing new events until
interrupted. The client rewrites its compatibility media type to application/json
(domains/nissa/elastic.py), so OpenSearch-compatible servers work too.
"""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType
from typing import Any

from domains.nissa.indexer import BATCH, DEFAULT_INDEX, Cursor, Indexer, IndexingError
from leyline.datadir import DataDir
from ops.common import add_command, print_json
from ops.errors import CommandError, UsageError
from ops.storeopts import add_store_option, open_store_from_args


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "index",
        handle,
        "index the log's events into Elasticsearch (idempotent, resumable)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument(
        "--es", metavar="URL", required=True, help="the Elasticsearch URL, e.g. http://host:9200"
    )
    parser.add_argument("--index", default=DEFAULT_INDEX, help=f"the index name (default {DEFAULT_INDEX})")
    parser.add_argument("--follow", action="store_true", help="keep indexing new events until interrupted")
    parser.add_argument("--batch", type=int, default=BATCH, help=f"events per bulk request (default {BATCH})")
    add_store_option(parser)


def handle(args: argparse.Namespace) -> int:
    if not args.es.startswith(("http://", "https://")):
        raise UsageError(f"--es {args.es!r} is not an http:// or https:// URL")
    if args.index != args.index.lower() or not args.index:
        raise UsageError(f"--index {args.index!r}: Elasticsearch index names are lowercase")
    if args.batch < 1:
        raise UsageError(f"--batch {args.batch} must be at least 1")
    store = open_store_from_args(args, create=False)
    from domains.nissa.elastic import es_client  # the client stack (and redis, below) take half a second
    from eventstore.mirror import redacted

    es = es_client(args.es)
    try:
        cursor = Cursor.load(DataDir.of(args.data_dir).index, redacted(args.es), args.index)
        start = cursor.position
        indexer = Indexer(store, es, cursor, args.index)
        try:
            indexer.prepare()
            if args.follow:
                stop = threading.Event()

                def _stop(signum: int, frame: FrameType | None) -> None:
                    stop.set()

                signal.signal(signal.SIGTERM, _stop)
                signal.signal(signal.SIGINT, _stop)
                indexer.follow(stop, args.batch)
            else:
                indexer.catch_up(args.batch)
        except IndexingError as exc:
            raise CommandError(f"{exc} (cursor at position {cursor.position}; run again to resume)") from None
        except Exception as exc:  # the client's connection and API errors: one line, exit 1
            raise CommandError(f"Elasticsearch at {redacted(args.es)}: {exc}") from None
    finally:
        es.close()
        store.close()
    result = {
        "index": args.index,
        "from_position": start,
        "position": cursor.position,
        "indexed": cursor.position - start,
    }
    if args.json:
        print_json(result)
    else:
        print(f"indexed {result['indexed']} event(s) into {args.index}; cursor at position {cursor.position}")
    return 0
