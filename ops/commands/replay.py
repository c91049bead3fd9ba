"""`esper replay`: print events of the log as JSON lines (SPEC §12).

The log is opened read-only: replay never truncates, repairs or rewrites anything (a torn tail is left
for `esper recover`, and said on stderr).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from typing import Any

from google.protobuf import json_format
from tqdm import tqdm

from eventstore import EventFilter
from eventstore.file import FileStore
from leyline import DecodeError, decode_payload, pb
from ops.common import add_command
from ops.errors import UsageError
from ops.storeopts import add_store_option, open_store_from_args


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "replay",
        handle,
        "print events of the log as JSON lines",
        description="Print events from the log, one JSON object per line, in global order: the envelope's\n"
        "fields and the payload decoded (upcast to the current schema). Filters combine with AND;\n"
        "each filter option may be repeated (OR within the option).\n\n"
        "example: esper replay --category seed --type SeedTransitioned --from 100",
    )
    add_store_option(parser)
    parser.add_argument(
        "--from", dest="from_position", type=int, default=1, metavar="POS", help="first position"
    )
    parser.add_argument(
        "--to", dest="to_position", type=int, default=None, metavar="POS", help="last position"
    )
    parser.add_argument("--stream", action="append", default=[], metavar="S", help="only this stream")
    parser.add_argument("--category", action="append", default=[], metavar="C", help="only this category")
    parser.add_argument(
        "--type", dest="event_types", action="append", default=[], metavar="T", help="only type T"
    )


def envelope_json(envelope: pb.EventEnvelope) -> dict[str, Any]:
    document: dict[str, Any] = {
        "position": envelope.global_position,
        "stream": envelope.stream,
        "stream_version": envelope.stream_version,
        "event_type": envelope.event_type,
        "event_id": envelope.event_id,
        "schema_version": envelope.schema_version,
        "occurred_at_ns": envelope.occurred_at_ns,
        "run_id": envelope.run_id,
        "correlation_id": envelope.correlation_id,
        "causation_id": envelope.causation_id,
        "source": envelope.source,
    }
    if envelope.HasField("epoch"):
        document["epoch"] = envelope.epoch
    if envelope.key_id:
        document["key_id"] = envelope.key_id
    try:
        document["payload"] = json_format.MessageToDict(
            decode_payload(envelope), preserving_proto_field_name=True
        )
    except DecodeError as exc:
        document["payload_base64"] = base64.b64encode(envelope.payload).decode()
        document["payload_error"] = str(exc)
    return document


def handle(args: argparse.Namespace) -> int:
    if args.from_position < 1:
        raise UsageError("--from must be a position >= 1")
    if args.to_position is not None and args.to_position < args.from_position:
        raise UsageError("--to must not be below --from")
    event_filter = EventFilter(frozenset(args.stream), frozenset(args.category), frozenset(args.event_types))
    store = open_store_from_args(args, create=False, read_only=True)
    if isinstance(store, FileStore) and store.recovery.torn_bytes:
        print(f"esper replay: {store.recovery.describe()}", file=sys.stderr)
    try:
        head = store.head_position()
        last = head if args.to_position is None else min(args.to_position, head)
        total = max(0, last - args.from_position + 1)
        events = store.read_all(args.from_position, event_filter, to_position=last)
        out = sys.stdout
        with tqdm(total=total, desc="replay", unit="ev", disable=args.json or not sys.stderr.isatty()) as bar:
            for envelope in events:
                out.write(json.dumps(envelope_json(envelope)) + "\n")
                bar.update(envelope.global_position - bar.n - args.from_position + 1)
    finally:
        store.close()
    return 0
