"""SeedSlot: the growth point a host declares and calls in forward, and the isolation monitor.

Forward per stage (the lifecycle sets `stage`; `alpha` is a 0-dim tensor buffer, so a compiled host
does not recompile when the ramp moves):
- DORMANT, GERMINATED, CULLED, EMBARGOED, RESETTING, TERMINATED: the input itself (GERMINATED has the
  module attached but never calls it).
- TRAINING: the seed runs on the *detached* input and the slot returns the host tensor unchanged, bit for
  bit; `_ShadowGradient` hands the gradient arriving at the slot output to the seed output as well (with a
  quadratic pull toward the host tensor), so the seed learns from the task signal as if it were blended
  in, while nothing flows from the seed path into the host (its input is detached).
- BLENDING and SHADOWING: `lerp(x, seed(x.detach()), alpha)`; the seed input stays detached.
- PROBATIONARY: `seed(x)`, isolation lifted; FOSSILIZED: `seed(x)`, merged, no guards.

A WideningSlot (a widening: the host calls `slot(tap, x)`) runs the same stages with `x + seed(tap)` in
place of `seed(x)`.

Guards (until FOSSILIZED): a non-finite seed output is replaced by the host's value and counted; at each
optimizer step (a step pre-hook) the seed's gradient norm is accumulated and a non-finite seed gradient
zeroes the seed's gradients for that step; all on the device, read at the epoch boundary (no per-step
host synchronisation).

Isolation monitor (isolated stages): after each training forward it walks the seed output's autograd graph
(it stops at the detached input, so it is as small as the seed's own graph). Any leaf that is not one of the
seed's own parameters is a path for gradient from the seed into the host; a backward hook on that tensor
records the violation with the gradient norm it received when backward actually reaches it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from domains.karn.blocks import SLOT_RANKS
from leyline import pb
from leyline.lifecycle import DORMANT, FOSSILIZED, PROBATIONARY, RUNNING_STAGES, TRAINING, stage_name


class _ShadowGradient(torch.autograd.Function):
    """Forward returns the host tensor unchanged. Backward gives the host its gradient untouched, and the
    seed the gradient of a local quadratic model of the task loss around the host tensor,
    `gᵀr + (c / 2B)‖r‖²` with r = seed − host and B the batch size: its minimum is r = −(B/c)·g, a step
    down each sample's own loss gradient, which shrinks as the host converges. Without the quadratic term
    the seed would keep following a gradient that its own output never changes."""

    @staticmethod
    def forward(ctx: Any, host: torch.Tensor, seed: torch.Tensor, curvature: float) -> torch.Tensor:
        ctx.save_for_backward(host, seed)
        ctx.curvature = curvature
        return host.view_as(host)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        host, seed = ctx.saved_tensors
        pull = ctx.curvature / max(1, host.shape[0])
        return grad, grad + pull * (seed - host), None


@dataclass
class Violation:
    parameter: str
    gradient_norm: torch.Tensor


class IsolationMonitor:
    """Watches one slot's seed: gradient norm, non-finite values and isolation violations."""

    def __init__(self, namer: Callable[[torch.Tensor], str]) -> None:
        self.namer = namer
        self.own: set[int] = set()
        self.violations: list[Violation] = []
        self.steps = 0
        self.grad_sq: torch.Tensor | None = None
        self.grad_steps = 0  # optimizer steps in which the seed had gradients (grad_sq's count)
        self.nonfinite: torch.Tensor | None = None
        self.params: list[nn.Parameter] = []
        # The host side of the gradient window (gradients.py): its parameters while the window is open.
        self.host_params: list[nn.Parameter] = []
        self.host_sq: torch.Tensor | None = None
        self.host_steps = 0
        self._step_hooks: list[RemovableHandle] = []
        self._probe_hooks: list[RemovableHandle] = []

    @property
    def armed(self) -> bool:
        return self.grad_sq is not None

    def arm(
        self, seed: nn.Module, device: torch.device, optimizer: torch.optim.Optimizer | None = None
    ) -> None:
        """Watch seed; with an optimizer, its gradients are checked once per step, before the step."""
        self.disarm()
        self.own = {id(t) for t in seed.parameters()} | {id(t) for t in seed.buffers()}
        self.params = [p for p in seed.parameters() if p.requires_grad]
        self.grad_sq = torch.zeros((), device=device)
        self.nonfinite = torch.zeros((), dtype=torch.int64, device=device)
        if optimizer is not None:
            self._step_hooks = [optimizer.register_step_pre_hook(self._before_step)]

    def watch_host(self, optimizer: torch.optim.Optimizer | None) -> None:
        """Also accumulate the host's gradient norm at each step (the host being the optimizer groups that
        are no seed's); None stops it."""
        self.host_params = (
            []
            if optimizer is None
            else [
                p
                for group in optimizer.param_groups
                if "kasmina_slot" not in group
                for p in group["params"]
                if p.requires_grad and id(p) not in self.own
            ]
        )
        self.host_sq = None
        if self.host_params:
            self.host_sq = torch.zeros((), device=self.host_params[0].device)
        self.host_steps = 0

    def drain_host(self) -> tuple[float, int]:
        """(RMS per step of the host's gradient norm, steps) since the last drain; resets them."""
        steps = self.host_steps
        norm = (float(self.host_sq) / steps) ** 0.5 if self.host_sq is not None and steps else 0.0
        if self.host_sq is not None:
            self.host_sq.zero_()
        self.host_steps = 0
        return norm, steps

    def disarm(self) -> None:
        for handle in (*self._step_hooks, *self._probe_hooks):
            handle.remove()
        self._step_hooks, self._probe_hooks = [], []
        self.own = set()
        self.params = []
        self.violations = []
        self.steps = 0
        self.grad_sq = None
        self.grad_steps = 0
        self.nonfinite = None
        self.host_params = []
        self.host_sq = None
        self.host_steps = 0

    def _before_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        """Accumulate the seed's gradient norm; a non-finite seed gradient zeroes the seed's gradients for
        this step (the seed skips it, the host is untouched), all without a host synchronisation."""
        if self.host_sq is not None:
            host_grads = [p.grad for p in self.host_params if p.grad is not None]
            if host_grads:
                self.host_sq += torch.nn.utils.get_total_norm(host_grads).float().square()
                self.host_steps += 1
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads or self.grad_sq is None or self.nonfinite is None:
            return
        total = torch.nn.utils.get_total_norm(grads)
        self.grad_steps += 1
        bad = ~torch.isfinite(total)
        self.nonfinite += bad
        self.grad_sq += torch.where(bad, 0.0, total.float().square())
        for grad in grads:
            grad.masked_fill_(bad, 0.0)

    def count_nonfinite(self, output: torch.Tensor) -> torch.Tensor:
        finite = torch.isfinite(output)
        if self.nonfinite is not None:
            self.nonfinite += (~finite).any()
        return finite

    def check(self, output: torch.Tensor) -> None:
        """Find tensors outside the seed that the seed output's graph reaches; hook them for backward."""
        self.steps += 1
        for handle in self._probe_hooks:
            handle.remove()
        self._probe_hooks = []
        root = output.grad_fn
        if root is None:
            return
        stack = [root]
        seen = set()
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            variable = getattr(node, "variable", None)
            if isinstance(variable, torch.Tensor) and id(variable) not in self.own:
                self._probe_hooks.append(variable.register_hook(self._violation_hook(variable)))
            stack.extend(child for child, _ in node.next_functions if child is not None)

    def _violation_hook(self, tensor: torch.Tensor) -> Callable[[torch.Tensor], None]:
        name = self.namer(tensor)

        def record(grad: torch.Tensor) -> None:
            self.violations.append(Violation(name, torch.linalg.vector_norm(grad.detach().float())))

        return record

    def rms_norm(self) -> float:
        """The seed's RMS gradient norm per optimizer step since the last drain (per step with seed
        gradients: forwards are not counted, a PROBATIONARY seed is not checked on its forward)."""
        return (float(self.grad_sq) / max(1, self.grad_steps)) ** 0.5 if self.grad_sq is not None else 0.0

    def drain(self) -> tuple[list[tuple[str, float]], float, int]:
        """(violations, RMS gradient norm per step, non-finite count) since the last drain; resets them."""
        violations = [(v.parameter, float(v.gradient_norm)) for v in self.violations]
        grad_norm = self.rms_norm()
        nonfinite = 0
        if self.grad_sq is not None and self.nonfinite is not None:
            nonfinite = int(self.nonfinite)
            self.grad_sq.zero_()
            self.nonfinite.zero_()
        self.grad_steps = 0
        self.violations = []
        self.steps = 0
        return violations, grad_norm, nonfinite


class SeedSlot(nn.Module):
    """A growth point: `x = self.slot0(x)` in the host's forward. `shape` is one sample's shape."""

    seed: nn.Module | None
    alpha: torch.Tensor

    def __init__(self, slot: int, kind: int, shape: tuple[int, ...]) -> None:
        super().__init__()
        if kind not in SLOT_RANKS:
            raise ValueError(
                f"unknown slot kind {kind}; "
                "use pb.SLOT_KIND_CONV2D, pb.SLOT_KIND_SEQUENCE or pb.SLOT_KIND_WIDEN"
            )
        if len(shape) != SLOT_RANKS[kind]:
            raise ValueError(f"slot kind {kind} takes a shape of rank {SLOT_RANKS[kind]}, got {shape}")
        if (kind == pb.SLOT_KIND_WIDEN) != isinstance(self, WideningSlot):
            raise ValueError("a widening slot is a WideningSlot (make_slot builds the right one)")
        self.slot = slot
        self.kind = kind
        self.shape = tuple(int(d) for d in shape)
        self.stage: int = DORMANT
        self.override: float | None = None  # counterfactual probes: force this alpha (no grad)
        self.curvature = 1.0  # TRAINING: of the seed's local loss model (see _ShadowGradient)
        self.register_buffer("alpha", torch.zeros(()))
        self.register_module("seed", None)
        self.monitor = IsolationMonitor(lambda t: f"<tensor {tuple(t.shape)}>")

    def extra_repr(self) -> str:
        return f"slot={self.slot}, kind={self.kind}, shape={self.shape}, stage={stage_name(self.stage)}"

    @property
    def device(self) -> torch.device:
        return self.alpha.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._route(x, x)

    def _through(self, seed: nn.Module, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """The slot's value with the seed fully in: the seed's output on its input."""
        result: torch.Tensor = seed(source)
        return result

    def _route(self, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """The slot's output for the host tensor x, the seed reading source (x itself, or a tap)."""
        seed = self.seed
        stage = self.stage
        if seed is None:
            return x
        if self.override is not None:
            if self.override == 0.0:
                return x
            full = self._through(seed, x, source)
            return full if self.override == 1.0 else torch.lerp(x, full, self.override)
        if stage not in RUNNING_STAGES:
            return x
        if stage == FOSSILIZED:
            return self._through(seed, x, source)
        if stage == PROBATIONARY:
            return self._guarded(self._through(seed, x, source), x)
        y = self._through(seed, x.detach(), source.detach())
        if torch.is_grad_enabled():
            self.monitor.check(y)
        if stage == TRAINING:
            self.monitor.count_nonfinite(y)
            return _ShadowGradient.apply(x, y, self.curvature)
        return torch.lerp(x, self._guarded(y, x.detach()), self.alpha.to(x.dtype))

    def _guarded(self, y: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
        finite = self.monitor.count_nonfinite(y)
        return torch.where(finite, y, fallback)


class WideningSlot(SeedSlot):
    """A widening (pb.SLOT_KIND_WIDEN, shape [C, H, W, K]): `x = self.slot3(tap, x)` in the host's forward,
    where tap [N, C, H, W] is a layer's input and x [N, K] a later pre-activation. The seed reads the tap
    and its output is added to x: new units beside the layer, whose consumer weights the seed owns. Every
    stage behaves as in a SeedSlot whose seed maps x to `x + seed(tap)` (the tap detached while isolated),
    so a seed whose output is zero at graft leaves the host bit-identical."""

    def forward(self, tap: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self._route(x, tap)

    def _through(self, seed: nn.Module, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = x + seed(source)
        return result


def make_slot(slot: int, kind: int, shape: tuple[int, ...]) -> SeedSlot:
    """The slot module for a host's declared slot: a WideningSlot for a widening, else a SeedSlot."""
    factory = WideningSlot if kind == pb.SLOT_KIND_WIDEN else SeedSlot
    return factory(slot, kind, shape)


def find_slots(host: nn.Module) -> list[SeedSlot]:
    """The host's slots, by slot number; slot numbers must be unique."""
    slots = sorted((m for m in host.modules() if isinstance(m, SeedSlot)), key=lambda m: m.slot)
    numbers = [s.slot for s in slots]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"duplicate slot numbers in host: {numbers}")
    return slots
