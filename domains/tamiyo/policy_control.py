"""Delivery of an operator's policy change to a live run: a control file, as for `esper rollback`.

`esper policy activate VERSION` (after checking the version's signature and artifact hash against the log)
and `esper policy rollback` write `<data-dir>/control/policy-<run>.json` atomically and privately
(`leyline.datadir.write_private`). The live run's GNN controller looks for it at each epoch boundary:
an activation is verified off the training thread (signature, hash, schema, shapes, a smoke decision on
the graph of that boundary) and activated at the next boundary; a rollback is applied at the boundary
that sees it. The file is removed once its request took effect; a later request replaces an earlier one
not yet taken. A request written while the run is not live is taken when it is resumed.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass

from leyline import pb
from leyline.datadir import DataDir, write_private

ACTIVATE = "activate"
ROLLBACK = "rollback"


@dataclass(frozen=True)
class PolicyRequest:
    request_id: str
    run_id: str
    action: str  # ACTIVATE or ROLLBACK
    version: str = ""
    published: pb.EventEnvelope | None = None  # the signed PolicyPublished of the version to activate

    def to_dict(self) -> dict[str, str]:
        document = {"request_id": self.request_id, "run_id": self.run_id, "action": self.action}
        document["version"] = self.version
        if self.published is not None:
            document["published"] = base64.b64encode(self.published.SerializeToString()).decode()
        return document

    @classmethod
    def from_dict(cls, document: dict[str, str]) -> PolicyRequest:
        published = None
        if document.get("published"):
            published = pb.EventEnvelope.FromString(base64.b64decode(document["published"]))
        return cls(
            str(document["request_id"]),
            str(document["run_id"]),
            str(document["action"]),
            str(document.get("version", "")),
            published,
        )


def deliver(
    data_dir: DataDir, run_id: str, action: str, version: str = "", published: pb.EventEnvelope | None = None
) -> PolicyRequest:
    if action not in (ACTIVATE, ROLLBACK):
        raise ValueError(f"unknown policy action {action!r}")
    request = PolicyRequest(uuid.uuid4().hex, run_id, action, version, published)
    write_private(data_dir.create().policy_request(run_id), json.dumps(request.to_dict()).encode())
    return request


def take(data_dir: DataDir, run_id: str) -> PolicyRequest | None:
    """The pending request for run_id, if any (left in place; `done` removes it)."""
    try:
        document = json.loads(data_dir.policy_request(run_id).read_text())
    except FileNotFoundError:
        return None
    return PolicyRequest.from_dict(document)


def done(data_dir: DataDir, request: PolicyRequest) -> None:
    """Remove the control file if it still holds this request (a newer one waits for the next boundary)."""
    current = take(data_dir, request.run_id)
    if current is not None and current.request_id == request.request_id:
        data_dir.policy_request(request.run_id).unlink(missing_ok=True)
