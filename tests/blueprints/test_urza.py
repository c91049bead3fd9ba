"""Urza: content addressing, verified loads (corruption is an event and an error), the LRU cache, and
the fresh, trainable, mode-aware modules Kasmina gets from load_module."""

from __future__ import annotations

import copy

import pytest
import torch

from domains.karn.blocks import CONV, SEQUENCE
from domains.karn.blueprint import NotGraftable, ParameterOutOfRange, Use
from domains.tezzeret.service import Tezzeret, resolve_spec
from domains.tezzeret.source import SeedModuleSource
from domains.urza.artifact import ArtifactModule
from domains.urza.library import ArtifactCorrupted, ArtifactLibrary, ArtifactMissing, sha256_hex
from eventstore import EventStore
from leyline import decode_payload, pb
from tests.blueprints.conftest import events_of

CONV_SHAPE = (8, 8, 8)


def test_put_is_content_addressed_and_idempotent(library: ArtifactLibrary) -> None:
    digest = library.put(b"some artifact bytes")
    assert digest == sha256_hex(b"some artifact bytes")
    assert library.put(b"some artifact bytes") == digest
    assert library.artifact_hashes() == [digest]
    assert library.path_of(digest).read_bytes() == b"some artifact bytes"
    assert list((library.root / "tmp").iterdir()) == []


def test_load_module_returns_fresh_trainable_instances(source: SeedModuleSource) -> None:
    first, digest = source.load_module("BP009", {"hidden": 4}, CONV, CONV_SHAPE)
    second, again = source.load_module("BP009", {"hidden": 4}, CONV, CONV_SHAPE)
    assert digest == again and len(digest) == 64
    assert isinstance(first, ArtifactModule) and first is not second
    pointers = {p.data_ptr() for p in first.parameters()}
    assert pointers.isdisjoint(p.data_ptr() for p in second.parameters())
    x = torch.randn(3, *CONV_SHAPE)
    assert torch.equal(first(x), second(x))  # same initial weights, separate storage

    optimiser = torch.optim.SGD(first.parameters(), lr=0.1)
    loss = first(x).pow(2).mean()
    loss.backward()
    assert all(p.grad is not None for p in first.parameters())
    assert all(p.grad is None for p in second.parameters())
    optimiser.step()
    assert not torch.equal(first(x), second(x))

    hooked: list[int] = []
    first.graph.register_forward_hook(lambda module, args, out: hooked.append(1))
    second(x)
    assert hooked == []


def test_a_seed_call_runs_no_input_check_of_torch_export(source: SeedModuleSource) -> None:
    """The shapes are checked once, at G0 (an artifact is compiled for its slot's shape), not on every
    training step: an input that torch.export's per-call checks refuse (another image size than exported)
    reaches the graph, and a same-size convolution maps it to its own shape."""
    module, _ = source.load_module("BP009", {"hidden": 4}, CONV, CONV_SHAPE)
    channels, height, width = CONV_SHAPE
    wider = torch.randn(2, channels, height + 2, width + 2)
    assert module(wider).shape == wider.shape


def test_dropout_artifact_behaves_per_mode(source: SeedModuleSource) -> None:
    module, _ = source.load_module("BP004", {"p": 0.2}, SEQUENCE, (16, 32))
    x = torch.ones(64, 16, 32)
    module.train()
    dropped = module(x)
    assert (dropped == 0).float().mean() > 0.1  # dropout active in training
    module.eval()
    assert torch.equal(module(x), module(x))
    assert (module(x) != 0).all()  # and off in eval


def test_batch_norm_artifact_updates_statistics_in_training_only(source: SeedModuleSource) -> None:
    module, _ = source.load_module("BP006", {"momentum": 0.3}, CONV, CONV_SHAPE)
    assert isinstance(module, ArtifactModule)
    running = dict(module.graph.named_buffers())
    mean = next(tensor for name, tensor in running.items() if name.endswith("running_mean"))
    x = torch.randn(16, *CONV_SHAPE) * 3 + 2
    module.eval()
    evaluated = module(x)
    assert torch.count_nonzero(mean) == 0  # eval used (and left) the running statistics
    module.train()
    trained = module(x)
    assert torch.count_nonzero(mean) > 0  # training updated them, through the shared buffers
    assert not torch.allclose(evaluated, trained)
    module.eval()
    after = module(x)
    assert not torch.allclose(after, evaluated)  # eval now normalises with the updated statistics


def test_dtype_conversion_keeps_both_graphs_on_the_same_weights(source: SeedModuleSource) -> None:
    module, _ = source.load_module("BP004", {}, CONV, CONV_SHAPE)
    assert isinstance(module, ArtifactModule) and module.eval_graph is not None
    module.double()
    eval_params = dict(module.eval_graph.named_parameters())
    for name, parameter in module.graph.named_parameters():
        assert eval_params[name] is parameter and parameter.dtype == torch.float64
    module.eval()
    assert module(torch.randn(2, *CONV_SHAPE, dtype=torch.float64)).dtype == torch.float64


def test_corrupt_artifact_is_an_event_and_a_clear_error_then_recompile_restores_it(
    source: SeedModuleSource, library: ArtifactLibrary, tezzeret: Tezzeret, store: EventStore
) -> None:
    _, digest = source.load_module("BP002", {}, CONV, CONV_SHAPE)
    library.evict(digest)
    path = library.path_of(digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    with pytest.raises(ArtifactCorrupted, match="is corrupt"):
        source.load_module("BP002", {}, CONV, CONV_SHAPE)
    corrupted = [decode_payload(e) for e in store.read_all() if e.event_type == "ArtifactCorrupted"]
    assert len(corrupted) == 1
    payload = corrupted[0]
    assert isinstance(payload, pb.ArtifactCorrupted)
    assert payload.artifact_hash == digest and payload.blueprint_id == "BP002"
    assert payload.actual_hash == sha256_hex(bytes(data))
    assert not path.exists() and len(list((library.root / "corrupt").iterdir())) == 1

    with pytest.raises(ArtifactMissing):
        source.load_module("BP002", {}, CONV, CONV_SHAPE)
    module, fallback = source.load_module_or_identity("BP002", {}, CONV, CONV_SHAPE)
    assert fallback == "" and isinstance(module, torch.nn.Identity)

    state = tezzeret.compile(resolve_spec("BP002", {}, CONV, CONV_SHAPE))
    assert state.artifact_hash == digest and library.exists(digest)
    restored, again = source.load_module("BP002", {}, CONV, CONV_SHAPE)
    assert again == digest and isinstance(restored, ArtifactModule)
    assert len(events_of(store, "CompileJobSucceeded")) == 1


def test_lru_cache_is_bounded(source: SeedModuleSource, library: ArtifactLibrary) -> None:
    digests = [
        source.load_module(blueprint, {}, SEQUENCE, (4, 16))[1]
        for blueprint in ("BP002", "BP003", "BP005", "BP008", "BP011", "BP012")
    ]
    assert library.cached() == digests[-4:]  # capacity 4 in the fixture, least recently used evicted
    source.load_module("BP003", {}, SEQUENCE, (4, 16))
    assert library.cached()[-1] == digests[1]


def test_requests_are_checked_before_anything_is_compiled(
    source: SeedModuleSource, store: EventStore
) -> None:
    with pytest.raises(ParameterOutOfRange, match=r"'hidden' = 99 is outside \[2, 16\]"):
        source.load_module("BP009", {"hidden": 99}, CONV, CONV_SHAPE)
    with pytest.raises(NotGraftable, match="quarantine-only"):
        source.load_module("BP045", {}, CONV, CONV_SHAPE)
    with pytest.raises(NotGraftable, match="needs approval"):
        source.load_module("BP036", {}, CONV, CONV_SHAPE)
    assert store.head_position() == 0
    module, _ = source.load_module("BP036", {}, CONV, CONV_SHAPE, approved={"BP036"})
    assert module(torch.randn(2, *CONV_SHAPE)).shape == (2, *CONV_SHAPE)


def test_nan_injection_drill_through_the_artifact(source: SeedModuleSource) -> None:
    module, _ = source.load_module("BP045", {"period": 3}, CONV, CONV_SHAPE, use=Use.DRILL)
    x = torch.randn(2, *CONV_SHAPE)
    poisoned = [bool(torch.isnan(module(x)).all()) for _ in range(6)]
    assert poisoned == [False, False, True, False, False, True]
    fresh, _ = source.load_module("BP045", {"period": 3}, CONV, CONV_SHAPE, use=Use.DRILL)
    assert not torch.isnan(fresh(x)).any()  # each graft counts its own calls


def test_a_drill_source_loads_adversarial_blueprints_through_the_plain_protocol(
    library: ArtifactLibrary, tezzeret: Tezzeret
) -> None:
    drills = SeedModuleSource(library, tezzeret, use=Use.DRILL)
    module, digest = drills.load_module("BP045", {"period": 1}, CONV, CONV_SHAPE)
    assert torch.isnan(module(torch.randn(2, *CONV_SHAPE))).all() and digest
    live = SeedModuleSource(library, tezzeret, approved={"BP036"})
    with pytest.raises(NotGraftable):
        live.load_module("BP045", {"period": 1}, CONV, CONV_SHAPE)
    assert live.load_module("BP036", {}, CONV, CONV_SHAPE)[1]


def test_state_dict_round_trip_and_deepcopy_keep_one_set_of_weights(source: SeedModuleSource) -> None:
    module, _ = source.load_module("BP006", {}, CONV, CONV_SHAPE)
    other, _ = source.load_module("BP006", {}, CONV, CONV_SHAPE)
    assert isinstance(module, ArtifactModule) and isinstance(other, ArtifactModule)
    x = torch.randn(4, *CONV_SHAPE)
    module.train()
    module(x).sum().backward()
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.5)
    other.load_state_dict(module.state_dict())
    for mode in (False, True):
        module.train(mode)
        other.train(mode)
        assert torch.equal(module(x), other(x))
    copied = copy.deepcopy(module)
    assert isinstance(copied, ArtifactModule) and copied.eval_graph is not None
    with torch.no_grad():
        next(copied.graph.parameters()).mul_(2)
    assert torch.equal(next(copied.eval_graph.parameters()), next(copied.graph.parameters()))
    assert not torch.equal(next(copied.graph.parameters()), next(module.graph.parameters()))


def test_preload_makes_the_first_fetch_warm(source: SeedModuleSource, library: ArtifactLibrary) -> None:
    requests = [("BP005", {}, SEQUENCE, (4, 16)), ("BP045", {"period": 2}, CONV, CONV_SHAPE)]
    hashes = source.preload(requests)
    assert library.cached() == hashes
    module, digest = source.load_module("BP005", {}, SEQUENCE, (4, 16))
    assert digest == hashes[0] and library.cached()[-1] == digest and isinstance(module, ArtifactModule)
    with pytest.raises(NotGraftable):  # preloading a drill blueprint does not make it graftable
        source.load_module("BP045", {"period": 2}, CONV, CONV_SHAPE)
