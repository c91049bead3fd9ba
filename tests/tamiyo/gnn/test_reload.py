"""Versioned policies: artifacts and signatures checked on load; a live controller hot-reloads, refuses a
corrupt, mis-shaped or unsigned candidate with PolicyRolledBack, and rolls back a failing version."""

from __future__ import annotations

import io
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from prometheus_client import REGISTRY

from domains.tamiyo import policy_control
from domains.tamiyo.gnn.controller import GnnController
from domains.tamiyo.gnn.graph import EDGE_TYPES
from domains.tamiyo.gnn.network import NetworkConfig, initial_network
from domains.tamiyo.gnn.reload import WORKER
from domains.tamiyo.policy_store import (
    SCHEMA_VERSION,
    PolicyCorrupted,
    PolicyIncompatible,
    PolicyLibrary,
    PolicySignatureError,
    UnknownPolicy,
    VerifiedPolicy,
    feature_schema,
    publish,
    published,
    published_envelope,
    run_policies,
    serialize,
    update_of,
    verify,
)
from eventstore import EventStore, open_store
from leyline import decode_payload, pb
from leyline.datadir import DataDir
from leyline.signing import Keyring, Signer
from tests.tamiyo.gnn.support import gnn_controller, published_policy
from tests.tamiyo.scripted import RUN_ID, context, dormant_slots, packet

KEYRING = Keyring.generate()


@pytest.fixture
def setting(tmp_path: Path) -> Iterator[tuple[EventStore, DataDir]]:
    data_dir = DataDir(tmp_path)
    store = open_store(data_dir.log)
    yield store, data_dir
    store.close()


def boundary(controller: GnnController, epoch: int) -> list[pb.EventEnvelope]:
    return controller.decide(packet(epoch, 1.0 - 0.01 * epoch), context(epoch, dormant_slots(3))).events


def policy_events(events: list[pb.EventEnvelope]) -> list[tuple[str, str, str]]:
    found = []
    for envelope in events:
        if envelope.event_type in ("PolicyActivated", "PolicyRolledBack"):
            payload = decode_payload(envelope)
            assert isinstance(payload, pb.PolicyActivation)
            found.append((envelope.event_type, payload.version, payload.previous_version))
    return found


def request_activation(store: EventStore, data_dir: DataDir, version: str) -> None:
    policy_control.deliver(data_dir, RUN_ID, policy_control.ACTIVATE, version, published(store, version))


def swapped_to_v2(
    store: EventStore, data_dir: DataDir
) -> tuple[GnnController, VerifiedPolicy, VerifiedPolicy]:
    """A live controller that started on v1 and, asked at epoch 1, runs v2 from epoch 2; then v1 and v2."""
    first = published_policy(store, data_dir, KEYRING, seed=0, version="v1")
    second = published_policy(store, data_dir, KEYRING, seed=1, version="v2")
    controller = gnn_controller(first, KEYRING, data_dir)
    boundary(controller, 0)
    request_activation(store, data_dir, "v2")
    boundary(controller, 1)
    boundary(controller, 2)
    return controller, first, second


def artifact(weights: dict[str, torch.Tensor], adapter: dict[str, object] | None = None) -> bytes:
    buffer = io.BytesIO()
    document = {
        "schema_version": SCHEMA_VERSION,
        "features": feature_schema(),
        "network": NetworkConfig().to_dict(),
        "weights": weights,
        "adapter": adapter or {},
    }
    torch.save(document, buffer)
    return buffer.getvalue()


def test_a_published_policy_verifies_and_loads_identically(setting: tuple[EventStore, DataDir]) -> None:
    store, data_dir = setting
    network = initial_network(4)
    envelope = publish(store, PolicyLibrary(data_dir), Signer(KEYRING), network, version="v1")
    loaded = verify(published(store, "v1"), KEYRING, PolicyLibrary(data_dir))
    assert loaded.content_hash == update_of(envelope).content_hash
    assert all(
        torch.equal(a, b)
        for a, b in zip(network.state_dict().values(), loaded.network.state_dict().values(), strict=True)
    )
    assert serialize(initial_network(4)) == serialize(initial_network(4))  # the same seed, the same hash
    with pytest.raises(UnknownPolicy, match="unknown policy version 'v9'"):
        published(store, "v9")


def test_corrupt_mis_shaped_and_unsigned_policies_are_refused(setting: tuple[EventStore, DataDir]) -> None:
    store, data_dir = setting
    library = PolicyLibrary(data_dir)
    good = publish(store, library, Signer(KEYRING), initial_network(0), version="good")
    path = data_dir.policy_artifact(update_of(good).content_hash)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(PolicyCorrupted, match="sha256"):
        verify(good, KEYRING, library)

    state = initial_network(0).state_dict()
    state["encoders.seed.weight"] = torch.zeros(3, 3)
    update = pb.PolicyUpdate(version="misfit", content_hash=library.put(artifact(state)))
    with pytest.raises(PolicyIncompatible, match="do not fit"):
        verify(published_envelope(update, Signer(KEYRING)), KEYRING, library)

    unsigned = published_envelope(
        pb.PolicyUpdate(version="u", content_hash=update.content_hash), Signer(KEYRING)
    )
    unsigned.ClearField("hmac")
    with pytest.raises(PolicySignatureError, match="unsigned"):
        verify(unsigned, KEYRING, library)
    foreign = published_envelope(pb.PolicyUpdate(version="f"), Signer(Keyring.generate("k9")))
    with pytest.raises(PolicySignatureError, match="k9"):
        verify(foreign, KEYRING, library)


def test_a_policy_of_an_older_schema_is_refused_in_one_line(setting: tuple[EventStore, DataDir]) -> None:
    """A schema-1 policy (GAT on every edge type, torch_geometric's module names) is refused at verify, in
    one line that names both versions, rather than failing inside load_state_dict."""
    _, data_dir = setting
    library = PolicyLibrary(data_dir)
    old = {f"gat.convs.<{'___'.join(edge)}>.att_src": torch.zeros(1, 1, 32) for edge in EDGE_TYPES}
    document = {**torch.load(io.BytesIO(artifact(old)), weights_only=True), "schema_version": 1}
    buffer = io.BytesIO()
    torch.save(document, buffer)
    update = pb.PolicyUpdate(version="old", content_hash=library.put(buffer.getvalue()))
    with pytest.raises(PolicyIncompatible) as refused:
        verify(published_envelope(update, Signer(KEYRING)), KEYRING, library)
    message = str(refused.value)
    assert "schema version 1" in message and f"reads {SCHEMA_VERSION}" in message and "\n" not in message


def test_a_lora_adapter_is_merged_on_load_and_a_misfit_refused(setting: tuple[EventStore, DataDir]) -> None:
    _, data_dir = setting
    library = PolicyLibrary(data_dir)
    base = initial_network(0)
    a, b = torch.ones(2, 32), torch.full((3, 2), 0.5)
    adapter = {"rank": 2, "alpha": 4.0, "modules": {"operation_head.2": {"A": a, "B": b}}}
    digest = library.put(serialize(base, adapter))
    merged = library.load(digest)
    expected = base.operation_head[2].weight + (b @ a) * 2.0
    assert torch.allclose(merged.operation_head[2].weight, expected)
    adapter["modules"] = {"operation_head.2": {"A": torch.ones(2, 5), "B": b}}
    with pytest.raises(PolicyIncompatible, match="LoRA adapter"):
        library.load(library.put(serialize(base, adapter)))


def test_a_live_controller_swaps_at_the_boundary_after_the_request(
    setting: tuple[EventStore, DataDir],
) -> None:
    store, data_dir = setting
    first = published_policy(store, data_dir, KEYRING, seed=0, version="v1")
    published_policy(store, data_dir, KEYRING, seed=1, version="v2")
    controller = gnn_controller(first, KEYRING, data_dir)
    assert policy_events(boundary(controller, 0)) == [("PolicyActivated", "v1", "")]
    request_activation(store, data_dir, "v2")
    assert policy_events(boundary(controller, 1)) == []  # verification starts off the training thread
    events = boundary(controller, 2)
    assert policy_events(events) == [("PolicyActivated", "v2", "v1")]
    decision = next(decode_payload(e) for e in events if e.event_type == "DecisionMade")
    assert isinstance(decision, pb.DecisionMade) and decision.policy_version == "v2"
    assert data_dir.policy_request(RUN_ID).exists()  # until a checkpoint's capture records it as done
    controller.state_dict()
    assert WORKER.drain(timeout=60)
    assert not data_dir.policy_request(RUN_ID).exists()
    store.append(events)
    assert run_policies(store, RUN_ID) == ("v2", ["v1"])  # the log knows what the CLI can roll back to
    policy_control.deliver(data_dir, RUN_ID, policy_control.ROLLBACK, "v1")
    assert policy_events(boundary(controller, 3)) == [("PolicyRolledBack", "v1", "v2")]
    assert controller.policy_version == "v1"


@pytest.mark.parametrize("damage", ["corrupt", "mis-shaped", "unsigned", "non-finite"])
def test_a_bad_candidate_is_refused_with_an_event_and_the_run_goes_on(
    setting: tuple[EventStore, DataDir], damage: str
) -> None:
    store, data_dir = setting
    first = published_policy(store, data_dir, KEYRING, seed=0, version="v1")
    network = initial_network(1)
    if damage == "non-finite":
        with torch.no_grad():
            network.operation_head[2].bias.fill_(float("nan"))
    envelope = publish(store, PolicyLibrary(data_dir), Signer(KEYRING), network, version="bad")
    if damage == "corrupt":
        data_dir.policy_artifact(update_of(envelope).content_hash).write_bytes(b"not a policy")
    if damage == "mis-shaped":
        weights = network.state_dict()
        weights["slot_head.0.weight"] = torch.zeros(5, 5)
        update = pb.PolicyUpdate(version="bad", content_hash=PolicyLibrary(data_dir).put(artifact(weights)))
        envelope = published_envelope(update, Signer(KEYRING))
    if damage == "unsigned":
        envelope.ClearField("hmac")
    controller = gnn_controller(first, KEYRING, data_dir)
    boundary(controller, 0)
    refusals = REGISTRY.get_sample_value("esper_tamiyo_policy_changes_total", {"outcome": "refused"}) or 0.0
    policy_control.deliver(data_dir, RUN_ID, policy_control.ACTIVATE, "bad", envelope)
    boundary(controller, 1)
    events = boundary(controller, 2)
    refused = [e for e in events if e.event_type == "PolicyRolledBack"]
    assert policy_events(refused) == [("PolicyRolledBack", "v1", "bad")]
    reason = decode_payload(refused[0]).reason  # type: ignore[attr-defined]
    assert reason.startswith("refused: ") and "\n" not in reason
    assert controller.policy_version == "v1"
    assert (
        REGISTRY.get_sample_value("esper_tamiyo_policy_changes_total", {"outcome": "refused"}) == refusals + 1
    )
    assert any(e.event_type == "DecisionMade" for e in events)
    assert policy_events(boundary(controller, 3)) == []


def test_a_version_whose_decisions_fail_is_rolled_back(setting: tuple[EventStore, DataDir]) -> None:
    store, data_dir = setting
    controller, _, _ = swapped_to_v2(store, data_dir)
    assert controller.policy_version == "v2"
    with torch.no_grad():
        controller.gnn.network.value_head[2].bias.fill_(float("inf"))
    events = boundary(controller, 3)
    assert policy_events(events) == [("PolicyRolledBack", "v1", "v2")]
    decision = next(decode_payload(e) for e in events if e.event_type == "DecisionMade")
    assert isinstance(decision, pb.DecisionMade) and decision.reason.startswith("safe no-op")
    assert controller.policy_version == "v1"


def test_a_checkpointed_version_that_no_longer_verifies_is_refused_on_resume(
    setting: tuple[EventStore, DataDir],
) -> None:
    store, data_dir = setting
    controller, first, second = swapped_to_v2(store, data_dir)
    saved = controller.state_dict()
    data_dir.policy_artifact(second.content_hash).unlink()
    resumed = gnn_controller(first, KEYRING, data_dir)
    resumed.load_state_dict(saved)
    assert resumed.policy_version == "v1"
    events = policy_events(boundary(resumed, 3))
    assert events == [("PolicyRolledBack", "v1", "v2")]
    assert policy_events(boundary(resumed, 4)) == []


def test_a_request_outlives_a_crash_before_its_capture_and_is_never_applied_twice(
    setting: tuple[EventStore, DataDir],
) -> None:
    """The control file stays until a captured state records its request as done: a run resumed from a
    checkpoint before the request still takes it; one resumed after it ignores it, and the file goes."""
    store, data_dir = setting
    first = published_policy(store, data_dir, KEYRING, seed=0, version="v1")
    published_policy(store, data_dir, KEYRING, seed=1, version="v2")
    controller = gnn_controller(first, KEYRING, data_dir)
    boundary(controller, 0)
    before = controller.state_dict()  # the last checkpoint before the request
    request_activation(store, data_dir, "v2")
    boundary(controller, 1)
    assert policy_events(boundary(controller, 2)) == [("PolicyActivated", "v2", "v1")]
    assert WORKER.drain(timeout=60)
    assert data_dir.policy_request(RUN_ID).exists()  # the process dies here, before a checkpoint

    resumed = gnn_controller(first, KEYRING, data_dir)
    resumed.load_state_dict(before)
    boundary(resumed, 1)
    assert policy_events(boundary(resumed, 2)) == [("PolicyActivated", "v2", "v1")]
    left = data_dir.policy_request(RUN_ID).read_bytes()
    after = resumed.state_dict()
    assert WORKER.drain(timeout=60)
    assert not data_dir.policy_request(RUN_ID).exists()

    data_dir.policy_request(RUN_ID).write_bytes(left)  # the process died after the capture, before removal
    again = gnn_controller(first, KEYRING, data_dir)
    again.load_state_dict(after)
    assert policy_events(boundary(again, 3)) == [] and policy_events(boundary(again, 4)) == []
    assert again.policy_version == "v2"
    again.state_dict()
    assert WORKER.drain(timeout=60)
    assert not data_dir.policy_request(RUN_ID).exists()


def test_removing_a_done_request_keeps_a_newer_one(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path)
    old = policy_control.deliver(data_dir, RUN_ID, policy_control.ROLLBACK, "v1")
    new = policy_control.deliver(data_dir, RUN_ID, policy_control.ROLLBACK, "v1")
    policy_control.done(data_dir, old)
    taken = policy_control.take(data_dir, RUN_ID)
    assert taken is not None and taken.request_id == new.request_id
    assert sorted(p.name for p in data_dir.policy_request(RUN_ID).parent.iterdir()) == [
        data_dir.policy_request(RUN_ID).name
    ]
    policy_control.done(data_dir, new)
    assert policy_control.take(data_dir, RUN_ID) is None
    policy_control.done(data_dir, new)  # already gone: nothing to do


def test_a_dropped_policy_is_freed_on_the_worker_after_a_capture(setting: tuple[EventStore, DataDir]) -> None:
    """An operator rollback drops the active version (it is no earlier good one): its network is freed
    on the policy worker once the state is captured, not on the training thread at the boundary."""
    store, data_dir = setting
    controller, _, _ = swapped_to_v2(store, data_dir)
    freed_on: list[str] = []
    weakref.finalize(controller.gnn.network, lambda: freed_on.append(threading.current_thread().name))
    policy_control.deliver(data_dir, RUN_ID, policy_control.ROLLBACK, "v1")
    assert policy_events(boundary(controller, 3)) == [("PolicyRolledBack", "v1", "v2")]
    assert freed_on == []  # held until the next hand-off
    controller.state_dict()
    assert WORKER.drain(timeout=60)
    assert freed_on == ["tamiyo-policy-worker"]
