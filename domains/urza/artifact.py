"""The artifact file format and the trainable module an artifact loads into.

An artifact is a zip file (fixed timestamps, so the same content gives the same bytes and the same
sha256) holding `manifest.json` and one torch.export saved program per mode:

- `train.pt2` always; for templates with mode-dependent ops (dropout, batch norm) it is exported in
  training mode and `eval.pt2` in eval mode. torch.export bakes the mode into the graph (dropout's
  `train` flag, batch norm's use of batch statistics), so both are kept and `ArtifactModule` switches
  between them on `.train()` / `.eval()`, with the eval graph bound to the train graph's parameters and
  buffers: one set of weights, two behaviours.
- Templates without mode-dependent ops store `train.pt2` alone and use it in both modes.
- Strategy `aot_inductor:<device>` adds `eval.aoti.pt2`, an AOTInductor package of the eval forward for
  that device (see domains/urza/aoti.py), and the manifest's "inference" entry says what it was built
  for. `ArtifactModule` runs it for no-grad evaluation on that device, where it can load; training and
  everything else use the exported programs. The sha256 covers the whole file, package included.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from domains.urza.aoti import InferenceProgram, load_inference

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TRAIN_PROGRAM = "train.pt2"
EVAL_PROGRAM = "eval.pt2"
INFERENCE_PROGRAM = "eval.aoti.pt2"
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)


class ArtifactFormatError(Exception):
    """The bytes verified but are not an artifact this code can load."""


@dataclass(frozen=True)
class Unpacked:
    manifest: dict[str, Any]
    programs: dict[str, bytes]


def zip_entries(entries: dict[str, bytes]) -> bytes:
    """A zip file that depends on the entries alone (sorted names, fixed timestamps, no compression)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            archive.writestr(info, entries[name])
    return buffer.getvalue()


def pack(manifest: dict[str, Any], programs: dict[str, bytes]) -> bytes:
    return zip_entries({MANIFEST: json.dumps(manifest, sort_keys=True).encode(), **programs})


def unpack(data: bytes) -> Unpacked:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            manifest = json.loads(archive.read(MANIFEST))
            programs = {name: archive.read(name) for name in archive.namelist() if name != MANIFEST}
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ArtifactFormatError(f"not an Esper artifact: {exc}") from None
    if manifest.get("format") != FORMAT_VERSION or TRAIN_PROGRAM not in programs:
        raise ArtifactFormatError(
            f"artifact format {manifest.get('format')!r} is not {FORMAT_VERSION}, or it has no train program"
        )
    if INFERENCE_PROGRAM in programs and "inference" not in manifest:
        raise ArtifactFormatError("the artifact has an AOTInductor package but no manifest entry for it")
    return Unpacked(manifest, programs)


def save_program(program: torch.export.ExportedProgram) -> bytes:
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def preload_loader() -> None:
    """Import what the first `load_graph` imports (torch._dynamo with sympy and networkx: about a second of
    CPU), so that a thread can pay for it before the first graft's end-of-epoch hook would."""
    import torch._dynamo
    import torch._export.serde.serialize
    import torch.export._unlift  # noqa: F401


def load_graph(data: bytes) -> nn.Module:
    """The saved program as a callable module (a GraphModule) with trainable parameters, without the input
    checks torch.export puts on every call (a guards submodule in the graph and a forward pre-hook that
    walks the inputs against the export's constraints): about 0.1 ms a call, every training step and every
    evaluation batch of every grafted seed (digits, a grown host with two seeds: 3 % of an epoch). The
    shapes are checked once instead: an artifact is compiled for its slot's kind and shape, G0 runs it on
    that shape before the graft, and the batch dimension was exported dynamic."""
    module = torch.export.load(io.BytesIO(data)).module(check_guards=False)
    object.__setattr__(module, "validate_inputs", False)  # the hook's own switch (a plain attribute)
    return module


def _get_path(root: nn.Module, dotted: str) -> Tensor:
    value: Any = root
    for name in dotted.split("."):
        value = getattr(value, name)
    return value


def _set_path(root: nn.Module, dotted: str, value: Tensor, parameter: bool) -> None:
    *parents, leaf = dotted.split(".")
    owner = root
    for name in parents:
        owner = getattr(owner, name)
    if parameter:
        owner._parameters[leaf] = value  # type: ignore[assignment]
    else:
        owner._buffers[leaf] = value


def fresh_copy(module: nn.Module) -> nn.Module:
    """A new module sharing code and graph with `module` but owning fresh copies of its tensors.

    Much cheaper than deepcopy of a GraphModule (which regenerates its code): structure dictionaries are
    copied shallowly (so hooks registered on a copy stay on that copy), parameters and buffers cloned.
    """
    # object.__new__: GraphModule.__new__ would make a new class, without the generated forward.
    copy: nn.Module = object.__new__(type(module))
    state = module.__dict__.copy()
    for key, value in state.items():
        if isinstance(value, dict):
            state[key] = value.copy()
        elif isinstance(value, set | list):
            state[key] = type(value)(value)
    state["_parameters"] = {
        name: None if p is None else nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad)
        for name, p in module._parameters.items()
    }
    state["_buffers"] = {
        name: None if b is None else b.detach().clone() for name, b in module._buffers.items()
    }
    state["_modules"] = {
        name: None if child is None else fresh_copy(child) for name, child in module._modules.items()
    }
    copy.__dict__ = state
    return copy


class ArtifactModule(nn.Module):
    """A loaded artifact as a trainable module: forward runs the train or the eval graph, or for no-grad
    evaluation on its device the artifact's AOTInductor package (`inference`) if it has one that loads
    here; `inference_note` says why one it has is not used."""

    def __init__(
        self,
        train_graph: nn.Module,
        eval_graph: nn.Module | None,
        inference: InferenceProgram | None = None,
        inference_note: str = "",
    ) -> None:
        super().__init__()
        self.graph = train_graph
        object.__setattr__(self, "eval_graph", eval_graph)
        object.__setattr__(self, "inference", inference)
        self.inference_note = inference_note
        self._tie()

    eval_graph: nn.Module | None
    inference: InferenceProgram | None

    def _tie(self) -> None:
        """Bind the eval graph to the train graph's parameters and buffers."""
        if self.eval_graph is None:
            return
        for name, parameter in self.graph.named_parameters():
            _set_path(self.eval_graph, name, parameter, parameter=True)
        for name, buffer in self.graph.named_buffers():
            _set_path(self.eval_graph, name, buffer, parameter=False)

    def train(self, mode: bool = True) -> ArtifactModule:
        # Exported graphs refuse .train()/.eval(): the mode is chosen here, by picking a graph.
        self.training = mode
        return self

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> ArtifactModule:
        super()._apply(fn, recurse)
        self._tie()
        return self

    def forward(self, x: Tensor) -> Tensor:
        if self.inference is not None and not self.training and not torch.is_grad_enabled():
            state = [_get_path(self.graph, name) for name in self.inference.inputs]
            if self.inference.accepts(x, state):
                return self.inference(x, state)
        graph = self.eval_graph if not self.training and self.eval_graph is not None else self.graph
        out: Tensor = graph(x)
        return out

    def fresh(self) -> ArtifactModule:
        """An independent instance: same graphs and package, its own copy of every parameter and buffer."""
        eval_copy = None if self.eval_graph is None else fresh_copy(self.eval_graph)
        module = ArtifactModule(fresh_copy(self.graph), eval_copy, self.inference, self.inference_note)
        return module.train(self.training)


def module_from(unpacked: Unpacked) -> ArtifactModule:
    train_graph = load_graph(unpacked.programs[TRAIN_PROGRAM])
    eval_data = unpacked.programs.get(EVAL_PROGRAM)
    eval_graph = None if eval_data is None else load_graph(eval_data)
    package = unpacked.programs.get(INFERENCE_PROGRAM)
    if package is None:
        return ArtifactModule(train_graph, eval_graph)
    inference, note = load_inference(unpacked.manifest["inference"], package)
    return ArtifactModule(train_graph, eval_graph, inference, note)
