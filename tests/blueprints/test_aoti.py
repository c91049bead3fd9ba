"""Strategy aot_inductor:cpu: the artifact carries an AOTInductor package of the eval forward, used for
no-grad evaluation, verified by the sha256 like the rest, reproducible, and replaced by the exported
eval program where it cannot run.

SLOW: AOTInductor compiles C++ (10-35 s each on this machine). This module compiles BP006 (batch norm:
parameters and buffers, different graphs per mode) twice: once for the module, once to check that a
recompile gives the same bytes. Everything else reuses the first artifact."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from domains.karn.blocks import CONV
from domains.tezzeret.compiler import compile_artifact, template_for
from domains.tezzeret.jobs import CompileSpec, Status, choose_strategy
from domains.tezzeret.service import Tezzeret, resolve_spec
from domains.urza import metrics
from domains.urza.artifact import INFERENCE_PROGRAM, ArtifactModule, Unpacked, module_from, unpack
from domains.urza.library import ArtifactCorrupted, ArtifactLibrary
from eventstore import EventStore, open_store
from leyline import decode_payload, pb
from leyline.datadir import DataDir
from ops.compose import module_source

SHAPE = (8, 8, 8)
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EventStore, ArtifactLibrary, str]]:
    root = tmp_path_factory.mktemp("aoti")
    store = open_store(DataDir(root).log)
    library = ArtifactLibrary(DataDir(root).artifacts, store)
    state = Tezzeret(store, library).compile(spec())
    assert state.status is Status.SUCCEEDED, state.last_error
    yield store, library, state.artifact_hash
    store.close()


def spec() -> CompileSpec:
    return resolve_spec("BP006", {"momentum": 0.3}, CONV, SHAPE, "aot_inductor:cpu")


def loaded(compiled: tuple[EventStore, ArtifactLibrary, str]) -> ArtifactModule:
    _, library, digest = compiled
    return library.load(digest, "BP006").fresh()


def count_package_calls(module: ArtifactModule, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    assert module.inference is not None
    calls: list[int] = []
    real = module.inference.runner

    def spy(*args: Any) -> Any:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(module.inference, "runner", spy)
    return calls


def test_auto_picks_aot_inductor_on_cuda_and_export_on_cpu() -> None:
    assert choose_strategy("auto", "cpu") == "export"
    assert choose_strategy("auto", "cuda") == "aot_inductor:cuda"
    assert choose_strategy("aot_inductor", "cpu") == "aot_inductor:cpu"
    assert choose_strategy("export", "cuda") == "export"
    with pytest.raises(ValueError, match="unknown compile strategy 'inductor'"):
        choose_strategy("inductor", "cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        choose_strategy("auto", "tpu")


def test_a_source_compiles_with_the_strategy_chosen_for_its_device(
    store: EventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ESPER_COMPILE_STRATEGY", raising=False)
    assert module_source(store, DataDir(tmp_path), device="cpu").strategy == "export"
    assert module_source(store, DataDir(tmp_path), device="cuda").strategy == "aot_inductor:cuda"
    monkeypatch.setenv("ESPER_COMPILE_STRATEGY", "export")
    assert module_source(store, DataDir(tmp_path), device="cuda").strategy == "export"
    assert module_source(store, DataDir(tmp_path), strategy="aot_inductor", device="cpu").strategy == (
        "aot_inductor:cpu"
    )


@pytest.mark.slow
def test_the_job_stores_a_verified_artifact_with_a_package_for_this_machine(
    compiled: tuple[EventStore, ArtifactLibrary, str],
) -> None:
    store, library, digest = compiled
    stored = [decode_payload(e) for e in store.read_all() if e.event_type == "ArtifactStored"]
    assert [(s.artifact_hash, s.strategy) for s in stored if isinstance(s, pb.ArtifactStored)] == [
        (digest, "aot_inductor:cpu")
    ]
    unpacked = unpack(library.read_verified(digest))
    assert set(unpacked.programs) == {"train.pt2", "eval.pt2", INFERENCE_PROGRAM}
    target = unpacked.manifest["inference"]
    assert target["device"] == "cpu" and target["capability"] == torch.backends.cpu.get_cpu_capability()
    assert [name for name, _ in target["inputs"]] == [
        "norm.weight",
        "norm.bias",
        "norm.running_mean",
        "norm.running_var",
        "norm.num_batches_tracked",
    ]
    exported = unpack(compile_artifact(replace(spec(), strategy="export"))).programs
    assert {name: unpacked.programs[name] for name in exported} == exported  # same programs, same weights
    module = loaded(compiled)
    assert module.inference is not None and module.inference_note == ""


@pytest.mark.slow
def test_no_grad_eval_runs_the_package_and_matches_the_template_and_the_exported_program(
    compiled: tuple[EventStore, ArtifactLibrary, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    module = loaded(compiled)
    calls = count_package_calls(module, monkeypatch)
    eager = template_for(spec()).eval()
    x = torch.randn(5, *SHAPE, generator=torch.Generator().manual_seed(1))
    module.eval()
    assert module.eval_graph is not None
    with torch.no_grad():
        packaged = module(x)
        torch.testing.assert_close(packaged, eager(x), atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(packaged, module.eval_graph(x), atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(module(x[:1]), eager(x[:1]), atol=TOLERANCE, rtol=0)
    assert len(calls) == 2

    # With gradients wanted (or in training) the exported programs run: the package has no backward.
    x_grad = x.clone().requires_grad_(True)
    module(x_grad).sum().backward()
    assert x_grad.grad is not None and len(calls) == 2
    module.train()
    with torch.no_grad():
        module(x)
    assert len(calls) == 2


@pytest.mark.slow
def test_the_package_uses_each_copys_current_weights(
    compiled: tuple[EventStore, ArtifactLibrary, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    module, untouched = loaded(compiled), loaded(compiled)
    calls = count_package_calls(module, monkeypatch)
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(8, *SHAPE, generator=generator)
    optimiser = torch.optim.SGD(module.parameters(), lr=0.5)
    module.train()
    for _ in range(3):
        optimiser.zero_grad()
        (module(torch.randn(16, *SHAPE, generator=generator) * 3 + 2) - 1).pow(2).mean().backward()
        optimiser.step()
    module.eval()
    untouched.eval()
    assert module.eval_graph is not None and untouched.eval_graph is not None
    with torch.no_grad():
        trained = module(x)
        torch.testing.assert_close(trained, module.eval_graph(x), atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(untouched(x), untouched.eval_graph(x), atol=TOLERANCE, rtol=0)
        assert not torch.allclose(trained, untouched(x))
    assert len(calls) == 3  # `untouched` shares the loaded package: its calls count here too

    module.double()  # the package is float32 only: the exported program answers, in float64
    with torch.no_grad():
        assert module(x.double()).dtype == torch.float64
    assert len(calls) == 3


def with_manifest(unpacked: Unpacked, **inference: Any) -> Unpacked:
    manifest = json.loads(json.dumps(unpacked.manifest))
    manifest["inference"].update(inference)
    return Unpacked(manifest, unpacked.programs)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"device": "cuda"}, "compiled for cuda and this process has no CUDA device"),
        ({"capability": "VSX"}, "compiled for cpu capability 'VSX'"),
        ({"cpu_features": "0" * 16}, "compiled on a CPU with other instruction-set extensions"),
        ({}, "the package did not load"),
    ],
)
def test_a_package_that_cannot_run_here_falls_back_to_the_exported_eval_program(
    compiled: tuple[EventStore, ArtifactLibrary, str], change: dict[str, str], reason: str
) -> None:
    _, library, digest = compiled
    unpacked = with_manifest(unpack(library.read_verified(digest)), **change)
    if not change:
        unpacked.programs[INFERENCE_PROGRAM] = b"not a package"
    fallbacks = metrics.INFERENCE_FALLBACKS.labels("load_error" if not change else "device")
    before = fallbacks._value.get()
    module = module_from(unpacked)
    assert module.inference is None and reason in module.inference_note
    assert fallbacks._value.get() == before + 1
    x = torch.randn(4, *SHAPE)
    module.eval()
    assert module.eval_graph is not None
    with torch.no_grad():
        assert torch.equal(module(x), module.eval_graph(x))


@pytest.mark.slow
def test_a_corrupted_package_is_detected_by_the_hash(
    compiled: tuple[EventStore, ArtifactLibrary, str], tmp_path: Path
) -> None:
    store, library, digest = compiled
    data = bytearray(library.path_of(digest).read_bytes())
    unpacked = unpack(bytes(data))
    package = unpacked.programs[INFERENCE_PROGRAM]
    offset = bytes(data).index(package[:4096]) + len(package) // 2  # inside the package's bytes
    data[offset] ^= 0xFF
    copy = ArtifactLibrary(DataDir(tmp_path).artifacts, store)
    copy.path_of(digest).parent.mkdir(parents=True)
    copy.path_of(digest).write_bytes(bytes(data))
    with pytest.raises(ArtifactCorrupted, match="is corrupt"):
        copy.load(digest, "BP006")
    corrupted = [decode_payload(e) for e in store.read_all() if e.event_type == "ArtifactCorrupted"]
    assert [c.artifact_hash for c in corrupted if isinstance(c, pb.ArtifactCorrupted)] == [digest]


@pytest.mark.slow
def test_a_recompile_gives_the_same_bytes(
    compiled: tuple[EventStore, ArtifactLibrary, str], tmp_path: Path
) -> None:
    """What a resumed or restored job relies on to write the same file rather than a second one."""
    _, library, digest = compiled
    store = open_store(DataDir(tmp_path).log)
    try:
        other = ArtifactLibrary(DataDir(tmp_path).artifacts, store)
        assert Tezzeret(store, other).compile(spec()).artifact_hash == digest
        assert other.path_of(digest).read_bytes() == library.path_of(digest).read_bytes()
    finally:
        store.close()
