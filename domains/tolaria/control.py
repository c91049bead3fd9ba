"""Delivery of an operator's rollback to a live run: a signed request in a control file.

`esper rollback --run ID --to-epoch N` checks the request against the run's log (the run exists, is
running and has a committed checkpoint at epoch N), signs a RollbackRequested envelope with the data
directory's keyring (`signed_request`) and writes its bytes to `control/rollback-<ID>.request` atomically
(a private temporary file, fsync, rename). The live run looks for that file at each epoch boundary (one
stat) and trusts nothing in it: it decodes the envelope, verifies its signature, freshness and nonce with
the process's one Verifier, and checks the target against its committed checkpoints (rollback.py); a
request that passes is appended as the run's own signed RollbackRequested and applied before the next
epoch starts, anything else is a CommandRejected event on the run's stream and the run goes on. Either
way the file is removed. A later request written before the run took the earlier one replaces it. A
request is fresh for 60 s (the verifier's allowed skew): one written while the run is not live is refused
as stale when the run resumes later; ask again then.
"""

from __future__ import annotations

import uuid

from domains.tolaria.aggregate import run_stream
from leyline import new_envelope, pb
from leyline.datadir import DataDir, write_private
from leyline.signing import Signer

CONTENT_LIMIT = 64 * 1024  # bytes read from a control file: a request is a few hundred
OPERATOR = "operator"  # the envelope's source


def signed_request(signer: Signer, request: pb.RollbackRequested) -> pb.EventEnvelope:
    """The envelope an operator delivers: a RollbackRequested for the run's stream, signed."""
    envelope = new_envelope(
        "RollbackRequested",
        run_stream(request.run_id),
        request,
        run_id=request.run_id,
        correlation_id=request.run_id,
        source=OPERATOR,
        event_id=uuid.uuid4().hex,
    )
    return signer.sign(envelope)


def deliver(data_dir: DataDir, envelope: pb.EventEnvelope) -> None:
    """Write the signed request where the live run of envelope.run_id looks for it."""
    path = data_dir.create().rollback_request(envelope.run_id)
    path.parent.mkdir(exist_ok=True)
    write_private(path, envelope.SerializeToString())


def take(data_dir: DataDir, run_id: str) -> bytes | None:
    """The control file's content as found (untrusted), or None when there is no request. Anything other
    than a regular file there is not a request."""
    path = data_dir.rollback_request(run_id)
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as handle:
            return handle.read(CONTENT_LIMIT + 1)
    except FileNotFoundError:
        return None


def done(data_dir: DataDir, run_id: str, content: bytes) -> None:
    """Remove the control file if it still holds this content (a newer request stays for the next
    boundary)."""
    if take(data_dir, run_id) == content:
        data_dir.rollback_request(run_id).unlink(missing_ok=True)
