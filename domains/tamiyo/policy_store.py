"""Versioned policies: content-addressed artifacts under `<data-dir>/policies` and their signed publication.

An artifact is one `torch.save` document, named by the sha256 of its bytes (verified on every load):
- `schema_version` (SCHEMA_VERSION) and `features` (the graph's feature dimensions it was built for);
- `network`: the NetworkConfig; `weights`: the state dict, feature statistics included (the encoders'
  `<type>_mean`/`<type>_std` buffers standardise the graph's features);
- `adapter`: an optional LoRA adapter merged into the weights on load: `{"rank": r, "alpha": a,
  "modules": {name: {"A": [r, in], "B": [out, r]}}}` adds (a / r)·B·A to the 2-D `weight` of each named
  module (the layout a peft adapter's lora_A/lora_B matrices take).

A version is published by a PolicyPublished event on `policy-<version>` whose PolicyUpdate names the
content hash and the artifact path, HMAC-signed with the Leyline keyring; loading checks the signature
(key and HMAC, as commands are checked; the timestamp is the publication's, so no freshness window
applies), then the hash, then the schema and the shapes. Each failure is a one-line PolicyError.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from domains.tamiyo.gnn.graph import BLUEPRINT_DIM, FEATURE_DIMS, GLOBAL_DIM
from domains.tamiyo.gnn.network import NetworkConfig, PolicyNetwork
from eventstore import EventStore
from eventstore.api import EventFilter
from leyline import decode_payload, new_envelope, pb, stream_name
from leyline.datadir import DataDir, write_private
from leyline.errors import SignatureError
from leyline.signing import Keyring, Signer, Verifier

# 2: GAT on the structural edge types only (layer→layer, seed→layer, layer→seed), plain-torch message
# passing (domains/tamiyo/gnn/layers.py: other module names), per-edge-type mean scales in the graph.
# 1: GAT on every edge type, torch_geometric's HeteroConv.
SCHEMA_VERSION = 2
CATEGORY = "policy"
POLICY_NAME = "gnn"
GOOD_VERSIONS_KEPT = 4  # earlier good versions a run can roll back to


class PolicyError(Exception):
    """A policy that cannot be used; the message says which and why, in one line."""


class UnknownPolicy(PolicyError):
    pass


class PolicyCorrupted(PolicyError):
    pass


class PolicySignatureError(PolicyError):
    pass


class PolicyIncompatible(PolicyError):
    pass


def feature_schema() -> dict[str, int]:
    return {**FEATURE_DIMS, "globals": GLOBAL_DIM, "blueprint": BLUEPRINT_DIM}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def serialize(network: PolicyNetwork, adapter: Mapping[str, Any] | None = None) -> bytes:
    document = {
        "schema_version": SCHEMA_VERSION,
        "features": feature_schema(),
        "network": network.config.to_dict(),
        "weights": network.state_dict(),
        "adapter": dict(adapter or {}),
    }
    buffer = io.BytesIO()
    torch.save(document, buffer)
    return buffer.getvalue()


def merge_adapter(network: PolicyNetwork, adapter: Mapping[str, Any]) -> None:
    rank, alpha = int(adapter["rank"]), float(adapter["alpha"])
    modules = dict(network.named_modules())
    with torch.no_grad():
        for name, pair in adapter["modules"].items():
            weight = getattr(modules.get(name), "weight", None)
            if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
                raise PolicyIncompatible(
                    f"LoRA adapter names {name!r}, which has no 2-D weight in the network"
                )
            delta = pair["B"] @ pair["A"] * (alpha / rank)
            if delta.shape != weight.shape:
                raise PolicyIncompatible(
                    f"LoRA adapter for {name!r} is {tuple(delta.shape)}, the weight {tuple(weight.shape)}"
                )
            weight += delta


def deserialize(data: bytes) -> PolicyNetwork:
    try:
        document = torch.load(io.BytesIO(data), weights_only=True)
        version = document["schema_version"]
    except Exception as exc:
        raise PolicyIncompatible(f"not a policy artifact ({type(exc).__name__})") from None
    if version != SCHEMA_VERSION:
        raise PolicyIncompatible(
            f"policy schema version {version}; this Esper reads {SCHEMA_VERSION}: publish a policy built for "
            "it (esper policy init, or train one with Simic)"
        )
    if document.get("features") != feature_schema():
        raise PolicyIncompatible(
            f"policy built for features {document.get('features')}, not {feature_schema()}"
        )
    try:
        network = PolicyNetwork(NetworkConfig(**document["network"]))
        network.load_state_dict(document["weights"], strict=True)
    except (RuntimeError, TypeError, KeyError) as exc:
        first = str(exc).strip().splitlines()
        raise PolicyIncompatible(
            f"policy weights do not fit the network: {first[-1] if first else exc}"
        ) from None
    if document.get("adapter"):
        try:
            merge_adapter(network, document["adapter"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise PolicyIncompatible(f"malformed LoRA adapter ({type(exc).__name__}: {exc})") from None
    return network.eval()


class PolicyLibrary:
    """The artifacts under `<data-dir>/policies`, by sha256."""

    def __init__(self, data_dir: DataDir) -> None:
        self.data_dir = data_dir

    def put(self, data: bytes) -> str:
        digest = sha256(data)
        path = self.data_dir.create().policy_artifact(digest)
        if not path.exists():
            write_private(path, data)
        return digest

    def read(self, digest: str) -> bytes:
        path = self.data_dir.policy_artifact(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise PolicyCorrupted(f"policy artifact {path} is missing") from None
        actual = sha256(data)
        if actual != digest:
            raise PolicyCorrupted(
                f"policy artifact {path} has sha256 {actual[:12]}…, expected {digest[:12]}…"
            )
        return data

    def load(self, digest: str) -> PolicyNetwork:
        return deserialize(self.read(digest))


def published_envelope(
    update: pb.PolicyUpdate, signer: Signer, *, run_id: str = "", now_ns: int | None = None
) -> pb.EventEnvelope:
    envelope = new_envelope(
        "PolicyPublished",
        stream_name(CATEGORY, update.version),
        pb.PolicyPublished(update=update),
        run_id=run_id,
        source="tamiyo",
        occurred_at_ns=time.time_ns() if now_ns is None else now_ns,
    )
    return signer.sign(envelope)


def publish(
    store: EventStore,
    library: PolicyLibrary,
    signer: Signer,
    network: PolicyNetwork,
    *,
    version: str | None = None,
    parent_version: str = "",
    adapter: Mapping[str, Any] | None = None,
) -> pb.EventEnvelope:
    """Store the artifact and append its signed PolicyPublished; the version defaults to gnn-<hash[:12]>."""
    data = serialize(network, adapter)
    digest = library.put(data)
    update = pb.PolicyUpdate(
        version=version or f"{POLICY_NAME}-{digest[:12]}",
        policy_name=POLICY_NAME,
        content_hash=digest,
        parent_version=parent_version,
        artifact_path=str(library.data_dir.policy_artifact(digest).relative_to(library.data_dir.root)),
        created_at_ms=time.time_ns() // 1_000_000,
        lora=bool(adapter),
    )
    if published_versions(store).get(update.version) is not None:
        raise PolicyError(f"policy version {update.version!r} is already published")
    envelope = published_envelope(update, signer)
    store.append([envelope])
    return envelope


def published_versions(store: EventStore) -> dict[str, pb.EventEnvelope]:
    """Every published version's (first) PolicyPublished envelope, in publication order."""
    versions: dict[str, pb.EventEnvelope] = {}
    for envelope in store.read_all(event_filter=EventFilter(event_types=frozenset({"PolicyPublished"}))):
        update = update_of(envelope)
        versions.setdefault(update.version, envelope)
    return versions


def published(store: EventStore, version: str) -> pb.EventEnvelope:
    for envelope in store.read_stream(stream_name(CATEGORY, version)):
        if envelope.event_type == "PolicyPublished":
            return envelope
    raise UnknownPolicy(f"unknown policy version {version!r}; `esper policy list` shows the published ones")


def update_of(envelope: pb.EventEnvelope) -> pb.PolicyUpdate:
    payload = decode_payload(envelope)
    if not isinstance(payload, pb.PolicyPublished):
        raise PolicyError(f"event {envelope.event_id} is a {envelope.event_type}, not a PolicyPublished")
    return payload.update


def check_signature(envelope: pb.EventEnvelope, keyring: Keyring) -> pb.PolicyUpdate:
    """The PolicyUpdate of a publication signed with a key on the ring; PolicySignatureError otherwise."""
    update = update_of(envelope)
    if not envelope.hmac:
        raise PolicySignatureError(f"policy {update.version}: publication is unsigned")
    try:
        Verifier(keyring).verify(envelope, now_ns=envelope.occurred_at_ns)
    except SignatureError as exc:
        raise PolicySignatureError(f"policy {update.version}: {exc}") from None
    return update


@dataclass(frozen=True)
class VerifiedPolicy:
    version: str
    content_hash: str
    envelope: pb.EventEnvelope  # the signed PolicyPublished
    network: PolicyNetwork


def verify(envelope: pb.EventEnvelope, keyring: Keyring, library: PolicyLibrary) -> VerifiedPolicy:
    """Signature, hash, schema and shapes of a published policy; raises a PolicyError subclass."""
    update = check_signature(envelope, keyring)
    try:
        network = library.load(update.content_hash)
    except PolicyError as exc:
        raise type(exc)(f"policy {update.version}: {exc}") from None
    return VerifiedPolicy(update.version, update.content_hash, envelope, network)


def run_policies(store: EventStore, run_id: str) -> tuple[str, list[str]]:
    """A run's active policy version and its earlier good versions (most recent last), from the log."""
    active = ""
    good: list[str] = []
    wanted = EventFilter(event_types=frozenset({"PolicyActivated", "PolicyRolledBack"}))
    for envelope in store.read_all(event_filter=wanted):
        if envelope.run_id != run_id:
            continue
        payload = decode_payload(envelope)
        assert isinstance(payload, pb.PolicyActivation)
        if envelope.event_type == "PolicyActivated":
            if payload.previous_version and payload.previous_version != payload.version:
                good = [*good, payload.previous_version][-GOOD_VERSIONS_KEPT:]
        elif good and good[-1] == payload.version:
            good.pop()
        active = payload.version
    return active, good
