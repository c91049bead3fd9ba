"""Delivery of an operator's policy change to a live run: a control file, as for `esper rollback`.

`esper policy activate VERSION` (after checking the version's signature and artifact hash against the log)
and `esper policy rollback` write `<data-dir>/control/policy-<run>.json` atomically and privately
(`leyline.datadir.write_private`). The live run's GNN controller looks for it at each epoch boundary:
an activation is verified off the training thread (signature, hash, schema, shapes, a smoke decision on
the graph of that boundary) and activated at the next boundary; a rollback is applied at the boundary
that sees it. A boundary costs the training thread one stat while the file is unchanged (`poll`).

The file stays until the run's checkpointed state records its request as taken (the controller keeps
the id of the last request it took, and ignores that request if it finds it again, after a resume
from a later checkpoint); then it is removed off the training thread (`done`). A crash before that
leaves the request in place for the resumed run. A later request replaces an earlier one not yet
taken. A request written while the run is not live is taken when it is resumed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import uuid
from dataclasses import dataclass

from leyline import pb
from leyline.datadir import DataDir, write_private

ACTIVATE = "activate"
ROLLBACK = "rollback"
Seen = tuple[int, int, int]  # a control file's (inode, mtime_ns, size): write_private renames a new inode in


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
        document = json.loads(data_dir.policy_request(run_id).read_bytes())
    except FileNotFoundError:
        return None
    return PolicyRequest.from_dict(document)


def poll(data_dir: DataDir, run_id: str, seen: Seen | None) -> tuple[Seen | None, PolicyRequest | None]:
    """The control file's identity and, if it is not the file `seen` last time, its request: one stat
    per boundary while nothing changes."""
    path = data_dir.policy_request(run_id)
    try:
        status = os.stat(path)
        identity = (status.st_ino, status.st_mtime_ns, status.st_size)
        if identity == seen:
            return identity, None
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None, None
    return identity, PolicyRequest.from_dict(document)


def done(data_dir: DataDir, request: PolicyRequest) -> None:
    """Remove the control file if it still holds this request. It is renamed aside first and read there,
    so a newer request written meanwhile is put back (unless a newer one still took its place), never
    removed."""
    path = data_dir.policy_request(request.run_id)
    aside = path.with_name(f".{path.name}.{request.request_id}.done")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    try:
        try:
            document = json.loads(aside.read_bytes())
        except ValueError:
            document = None
        held = document.get("request_id") if isinstance(document, dict) else None
        if held != request.request_id:
            with contextlib.suppress(FileExistsError):
                os.link(aside, path)
    finally:
        aside.unlink(missing_ok=True)
