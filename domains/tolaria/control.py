"""Delivery of an operator's rollback to a live run: a control file in the data directory.

`esper rollback --run ID --to-epoch N` validates the request against the run's log (the run exists, is
running and has a committed checkpoint at epoch N) and writes `control/rollback-<ID>.json` atomically
(temporary file, fsync, rename). The live run looks for that file at each epoch boundary (one stat),
appends the request to the log as RollbackRequested, removes the file and applies the rollback before the
next epoch starts. A later request written before the run took the earlier one replaces it. A request
written while the run is not live is applied when it is resumed. Files need no server and work the same
with the file and the PostgreSQL event store, as long as the operator names the run's data directory.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from google.protobuf import json_format

from leyline import pb
from leyline.datadir import DataDir, write_private


@dataclass(frozen=True)
class RollbackDelivery:
    request_id: str  # the event id of the RollbackRequested it becomes
    request: pb.RollbackRequested


def deliver(data_dir: DataDir, request: pb.RollbackRequested) -> RollbackDelivery:
    path = data_dir.create().rollback_request(request.run_id)
    path.parent.mkdir(exist_ok=True)
    delivery = RollbackDelivery(uuid.uuid4().hex, request)
    document = {"request_id": delivery.request_id, "request": json_format.MessageToDict(request)}
    write_private(path, json.dumps(document).encode())
    return delivery


def take(data_dir: DataDir, run_id: str) -> RollbackDelivery | None:
    """The pending request for run_id, if any; the caller removes it with `done` once it is logged."""
    path = data_dir.rollback_request(run_id)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    request = json_format.ParseDict(document["request"], pb.RollbackRequested())
    return RollbackDelivery(str(document["request_id"]), request)


def done(data_dir: DataDir, delivery: RollbackDelivery) -> None:
    """Remove the control file if it still holds this request (a newer one is left for the next boundary)."""
    path = data_dir.rollback_request(delivery.request.run_id)
    current = take(data_dir, delivery.request.run_id)
    if current is not None and current.request_id == delivery.request_id:
        path.unlink(missing_ok=True)
