"""Training candidates: the policy each round of `esper policy train` makes, before any validation gate.

A candidate is an artifact in the policy library (by content hash) and a PolicyTrained event on
`policy-<version>` whose update names the version (`NAME-rR`), the content hash, the parent and the
training metrics. It is never PolicyPublished: `esper policy list`, `esper policy activate` and a live run's
hot reload only know published versions, and the validation gate publishes a release (a new version,
the same content hash) only when a candidate passes it.

Worker runs (the training's episodes, the gate's held-out and chaos runs) name a candidate by content
hash: controller `gnn:trained:<sha256>` (`controller_of`). `resolve` finds the PolicyTrained that
recorded that hash in the log (so only this log's own training products run), loads the artifact (the
library checks its sha256) and hands the controller a VerifiedPolicy whose envelope is the candidate's
update signed in memory with the data directory's key: the controller verifies signature, hash, schema
and shapes of what it runs (and again when a run resumes from a checkpoint) exactly as for a published
version. That envelope is never appended; the decisions name the candidate's version.
"""

from __future__ import annotations

import time

from domains.tamiyo.gnn.network import PolicyNetwork
from domains.tamiyo.policy_store import (
    CATEGORY,
    POLICY_NAME,
    PolicyLibrary,
    UnknownPolicy,
    VerifiedPolicy,
    published_envelope,
    serialize,
    verify,
)
from eventstore import EventFilter, EventStore
from leyline import decode_payload, new_envelope, pb, stream_name
from leyline.signing import Keyring, Signer

TRAINED = "trained:"  # gnn:trained:<content hash>
READ = EventFilter(event_types=frozenset({"PolicyTrained"}))


def controller_of(update: pb.PolicyUpdate) -> str:
    return f"gnn:{TRAINED}{update.content_hash}"


def trained_versions(store: EventStore) -> dict[str, pb.PolicyUpdate]:
    """Every training candidate's update (its first PolicyTrained), by version, in log order."""
    found: dict[str, pb.PolicyUpdate] = {}
    for envelope in store.read_all(event_filter=READ):
        payload = decode_payload(envelope)
        assert isinstance(payload, pb.PolicyTrained)
        found.setdefault(payload.update.version, payload.update)
    return found


def record(
    store: EventStore,
    library: PolicyLibrary,
    network: PolicyNetwork,
    *,
    version: str,
    parent_version: str,
    metrics: dict[str, float],
    steps: int,
    experiences: int,
) -> pb.PolicyUpdate:
    """Store the candidate's artifact and append its PolicyTrained; returns its update."""
    digest = library.put(serialize(network))
    update = pb.PolicyUpdate(
        version=version,
        policy_name=POLICY_NAME,
        content_hash=digest,
        parent_version=parent_version,
        artifact_path=str(library.data_dir.policy_artifact(digest).relative_to(library.data_dir.root)),
        created_at_ms=time.time_ns() // 1_000_000,
    )
    update.training_metrics.update(metrics)
    trained = pb.PolicyTrained(update=update, steps=steps, experiences=experiences)
    store.append([new_envelope("PolicyTrained", stream_name(CATEGORY, version), trained, source="simic")])
    return update


def resolve(store: EventStore, library: PolicyLibrary, keyring: Keyring, content_hash: str) -> VerifiedPolicy:
    """The candidate this log's PolicyTrained recorded with `content_hash`, verified; UnknownPolicy if
    no training in the log made it."""
    for update in trained_versions(store).values():
        if update.content_hash == content_hash:
            return verify(published_envelope(update, Signer(keyring)), keyring, library)
    raise UnknownPolicy(f"no training candidate with content hash {content_hash[:12]}… in this log")
