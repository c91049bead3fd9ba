"""Karn's catalogue: the 50 blueprints of SPEC §9 and two widenings (BP051, BP052: widening slots only,
see widening.py) with their metadata, parameter validation, building, the conservative pool and
deterministic selection.

Tiers: BP001–BP035 safe (risk 0.0–0.5, curriculum stages 0–4), BP036–BP042 experimental (risk 0.5–0.8,
stage 5, live use needs approval), BP043–BP050 adversarial (risk 0.8–1.0, stage 6, quarantine-only:
built only for fault drills and offline training, never for a live graft).

Longer than our ~400-line rule on purpose: the 50-entry table of SPEC §9 (about 210 lines) stays in one
place, beside the validation and selection that read it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cache

import torch
from torch import nn

from domains.karn import metrics
from domains.karn import templates as t
from domains.karn import widening as w
from domains.karn.blocks import CONV, SEQUENCE, SLOT_LAYOUTS, SLOT_RANKS, WIDEN
from domains.karn.faults import FAULTS, FaultInjected
from leyline import pb

SAFE = pb.BLUEPRINT_TIER_SAFE
EXPERIMENTAL = pb.BLUEPRINT_TIER_EXPERIMENTAL
ADVERSARIAL = pb.BLUEPRINT_TIER_ADVERSARIAL
BOTH = (CONV, SEQUENCE)
Factory = Callable[[int, tuple[int, ...], Mapping[str, float]], nn.Module]
SLOT_KIND_NAMES: dict[int, str] = {CONV: "conv2d", SEQUENCE: "sequence", WIDEN: "widen"}


class KarnError(Exception):
    """A blueprint request Karn refuses; the message says what and how to fix it."""


class UnknownBlueprint(KarnError):
    pass


class ParameterOutOfRange(KarnError):
    pass


class SlotMismatch(KarnError):
    pass


class NotGraftable(KarnError):
    """Quarantined or unapproved blueprint requested for a live graft."""


def _rejected(reason: str, error: KarnError) -> KarnError:
    metrics.REJECTED.labels(reason).inc()
    return error


class Use(Enum):
    LIVE = "live"  # grafted into a training run
    DRILL = "drill"  # fault drills and offline training: adversarial templates allowed


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    default: float
    integer: bool = True

    def to_pb(self) -> pb.ParameterRange:
        return pb.ParameterRange(min=self.low, max=self.high, default=self.default, integer=self.integer)


def ints(low: int, high: int, default: int) -> Range:
    return Range(float(low), float(high), float(default), integer=True)


def reals(low: float, high: float, default: float) -> Range:
    return Range(low, high, default, integer=False)


@dataclass(frozen=True)
class Blueprint:
    blueprint_id: str
    name: str
    tier: int
    risk: float
    stage: int
    kinds: tuple[int, ...]
    factory: Factory
    parameters: Mapping[str, Range] = field(default_factory=dict)
    description: str = ""
    conservative: bool = False

    @property
    def quarantine_only(self) -> bool:
        return self.tier == ADVERSARIAL

    @property
    def requires_approval(self) -> bool:
        return self.tier == EXPERIMENTAL

    def descriptor(self) -> pb.BlueprintDescriptor:
        descriptor = pb.BlueprintDescriptor(
            blueprint_id=self.blueprint_id,
            name=self.name,
            tier=self.tier,  # type: ignore[arg-type]
            risk=self.risk,
            curriculum_stage=self.stage,
            slot_kinds=list(self.kinds),  # type: ignore[arg-type]
            requires_approval=self.requires_approval,
            approved=not self.requires_approval and not self.quarantine_only,
            quarantine_only=self.quarantine_only,
            description=self.description or (self.factory.__doc__ or self.name).strip().splitlines()[0],
            conservative_pool=self.conservative,
        )
        for name, allowed in self.parameters.items():
            descriptor.parameter_ranges[name].CopyFrom(allowed.to_pb())
        return descriptor

    def defaults(self) -> dict[str, float]:
        return {name: allowed.default for name, allowed in self.parameters.items()}

    def extremes(self) -> tuple[dict[str, float], dict[str, float]]:
        """All parameters at the low end, and all at the high end."""
        low = {name: allowed.low for name, allowed in self.parameters.items()}
        high = {name: allowed.high for name, allowed in self.parameters.items()}
        return low, high


def _bp(
    number: int,
    name: str,
    tier: int,
    risk: float,
    stage: int,
    kinds: tuple[int, ...],
    factory: Factory,
    conservative: bool = False,
    description: str = "",
    **parameters: Range,
) -> Blueprint:
    return Blueprint(
        f"BP{number:03d}",
        name,
        tier,
        risk,
        stage,
        kinds,
        factory,
        parameters,
        description=description,
        conservative=conservative,
    )


S, X, A = SAFE, EXPERIMENTAL, ADVERSARIAL
CATALOGUE: tuple[Blueprint, ...] = (
    _bp(1, "identity_passthrough", S, 0.0, 0, BOTH, t.IdentityPassthrough, conservative=True),
    _bp(2, "linear_projection", S, 0.05, 0, BOTH, t.LinearProjection, True, hidden=ints(2, 32, 8)),
    _bp(3, "layer_norm_basic", S, 0.05, 0, BOTH, t.LayerNormBasic, True, eps=reals(1e-6, 1e-3, 1e-5)),
    _bp(4, "dropout_light", S, 0.1, 0, BOTH, t.DropoutLight, p=reals(0.01, 0.2, 0.1)),
    _bp(5, "relu_activation", S, 0.05, 0, BOTH, t.ReluActivation, True, hidden=ints(4, 64, 16)),
    _bp(6, "batch_norm_1d", S, 0.15, 1, BOTH, t.BatchNorm1d, momentum=reals(0.01, 0.3, 0.1)),
    _bp(7, "pooling_max", S, 0.15, 1, BOTH, t.PoolingMax, radius=ints(1, 2, 1)),
    _bp(8, "skip_connection", S, 0.05, 0, BOTH, t.SkipConnection, True, init_scale=reals(0.0, 1.0, 0.1)),
    _bp(9, "residual_block", S, 0.1, 1, BOTH, t.ResidualBlock, True, hidden=ints(2, 16, 16)),
    _bp(10, "concat_fusion", S, 0.15, 1, BOTH, t.ConcatFusion, hidden=ints(4, 32, 8)),
    _bp(11, "gelu_activation", S, 0.05, 0, BOTH, t.GeluActivation, True, hidden=ints(4, 64, 16)),
    _bp(12, "layer_scaling", S, 0.05, 0, BOTH, t.LayerScaling, True, init_scale=reals(0.1, 1.0, 1.0)),
    _bp(13, "grouped_conv", S, 0.2, 2, BOTH, t.GroupedConv, groups=ints(1, 4, 2), multiplier=ints(1, 4, 2)),
    _bp(14, "highway_gate", S, 0.2, 2, BOTH, t.HighwayGate, gate_bias=reals(-3.0, 0.0, -1.0)),
    _bp(
        15,
        "depthwise_separable",
        S,
        0.2,
        2,
        BOTH,
        t.DepthwiseSeparable,
        radius=ints(1, 2, 1),
        multiplier=ints(1, 4, 2),
    ),
    _bp(16, "squeeze_excitation", S, 0.2, 2, BOTH, t.SqueezeExcitation, hidden=ints(2, 16, 4)),
    _bp(17, "channel_attention", S, 0.25, 2, BOTH, t.ChannelAttention, hidden=ints(2, 16, 4)),
    _bp(18, "spatial_attention", S, 0.25, 2, BOTH, t.SpatialAttention, radius=ints(1, 3, 1)),
    _bp(
        19,
        "cross_attention",
        S,
        0.3,
        3,
        BOTH,
        t.CrossAttention,
        memory=ints(2, 16, 4),
        head_dim=ints(4, 16, 8),
    ),
    _bp(20, "attention_single_head", S, 0.3, 3, BOTH, t.AttentionSingleHead, head_dim=ints(4, 32, 8)),
    _bp(21, "feedforward_gated", S, 0.25, 2, BOTH, t.FeedforwardGated, hidden=ints(4, 64, 16)),
    _bp(22, "multi_head_attention_4", S, 0.35, 3, BOTH, t.MultiHeadAttention4, head_dim=ints(2, 8, 4)),
    _bp(
        23,
        "transformer_block",
        S,
        0.4,
        4,
        BOTH,
        t.TransformerBlock,
        head_dim=ints(2, 8, 4),
        hidden=ints(8, 64, 16),
    ),
    _bp(24, "conv_transformer", S, 0.4, 4, BOTH, t.ConvTransformer, head_dim=ints(4, 16, 8)),
    _bp(25, "dynamic_conv", S, 0.35, 3, BOTH, t.DynamicConv, experts=ints(2, 4, 2)),
    _bp(26, "adaptive_pooling", S, 0.2, 2, BOTH, t.AdaptivePooling, size=ints(1, 4, 2)),
    _bp(27, "feature_pyramid", S, 0.35, 3, BOTH, t.FeaturePyramid, levels=ints(2, 3, 2)),
    _bp(
        28, "dense_connection", S, 0.3, 3, BOTH, t.DenseConnection, growth=ints(2, 8, 4), layers=ints(2, 4, 2)
    ),
    _bp(29, "multi_head_attention_8", S, 0.4, 4, BOTH, t.MultiHeadAttention8, head_dim=ints(1, 4, 2)),
    _bp(
        30, "graph_attention", S, 0.45, 4, BOTH, t.GraphAttention, hidden=ints(4, 32, 8), radius=ints(1, 2, 1)
    ),
    _bp(
        31,
        "temporal_conv",
        S,
        0.3,
        3,
        (SEQUENCE,),
        t.TemporalConv,
        kernel=ints(2, 5, 3),
        multiplier=ints(1, 2, 1),
    ),
    _bp(32, "dilated_conv", S, 0.3, 3, BOTH, t.DilatedConv, dilation=ints(1, 3, 2)),
    _bp(33, "deformable_conv", S, 0.5, 4, (CONV,), t.DeformableConv, offset_scale=reals(0.5, 2.0, 1.0)),
    _bp(34, "non_local_block", S, 0.45, 4, BOTH, t.NonLocalBlock, inner=ints(2, 16, 4)),
    _bp(
        35,
        "learned_positional",
        S,
        0.25,
        2,
        (SEQUENCE,),
        t.LearnedPositional,
        init_std=reals(0.0, 0.1, 0.02),
    ),
    _bp(
        36,
        "mixture_of_experts_4",
        X,
        0.6,
        5,
        BOTH,
        t.MixtureOfExperts4,
        hidden=ints(4, 32, 8),
        top_k=ints(1, 2, 2),
    ),
    _bp(
        37,
        "hierarchical_attention",
        X,
        0.65,
        5,
        BOTH,
        t.HierarchicalAttention,
        window=ints(2, 4, 4),
        head_dim=ints(4, 16, 8),
    ),
    _bp(38, "memory_augmented", X, 0.6, 5, BOTH, t.MemoryAugmented, slots=ints(4, 32, 8)),
    _bp(
        39, "neural_ode_block", X, 0.7, 5, BOTH, t.NeuralOdeBlock, steps=ints(2, 4, 3), hidden=ints(4, 32, 8)
    ),
    _bp(40, "differentiable_nas", X, 0.75, 5, BOTH, t.DifferentiableNas, hidden=ints(4, 32, 8)),
    _bp(
        41,
        "meta_learning_layer",
        X,
        0.75,
        5,
        BOTH,
        t.MetaLearningLayer,
        inner_rate=reals(0.01, 0.5, 0.1),
        hidden=ints(4, 32, 8),
    ),
    _bp(
        42,
        "recursive_processing",
        X,
        0.8,
        5,
        BOTH,
        t.RecursiveProcessing,
        depth=ints(2, 6, 3),
        hidden=ints(4, 32, 8),
    ),
    _bp(43, "exploding_gradient", A, 0.85, 6, BOTH, t.ExplodingGradient, gain=reals(10.0, 1e4, 1e3)),
    _bp(44, "vanishing_gradient", A, 0.85, 6, BOTH, t.VanishingGradient, scale=reals(1e-8, 1e-3, 1e-6)),
    _bp(45, "nan_injection", A, 0.95, 6, BOTH, t.NanInjection, period=ints(1, 100, 3)),
    _bp(
        46,
        "infinite_loop",
        A,
        0.9,
        6,
        BOTH,
        t.FaultCarrier,
        description="x + W x after a busy wait of `wait_ms` per call: trips any time budget, then returns.",
        wait_ms=reals(10.0, 2000.0, 250.0),
    ),
    _bp(
        47,
        "memory_leak",
        A,
        0.9,
        6,
        BOTH,
        t.FaultCarrier,
        description="x + W x while retaining `leak_kb` per call, up to `max_mb` in total.",
        leak_kb=reals(1.0, 4096.0, 256.0),
        max_mb=reals(1.0, 256.0, 16.0),
    ),
    _bp(
        48,
        "deadlock_pattern",
        A,
        0.95,
        6,
        BOTH,
        t.FaultCarrier,
        description="x + W x after a two-lock order inversion with a helper thread, broken by `timeout_ms`.",
        timeout_ms=reals(10.0, 2000.0, 200.0),
    ),
    _bp(
        49,
        "race_condition",
        A,
        0.9,
        6,
        BOTH,
        t.FaultCarrier,
        description="x + W x perturbed by updates lost in unsynchronised threads (bounded).",
        threads=ints(2, 8, 4),
        increments=ints(10, 10_000, 1000),
    ),
    _bp(50, "adversarial_noise", A, 1.0, 6, BOTH, t.AdversarialNoise, epsilon=reals(0.01, 1.0, 0.1)),
    # widenings (not in SPEC §9): exact at graft by construction (a zero-initialised consumer)
    # widen_conv: 16 new channels by default. Fashion-MNIST, seed 0, grown arm: 8 channels 0.8887 (with or
    # without the residual grafts beside it), 16 channels 0.8969 (small host 0.8839, 5 seeds); digits,
    # 5 seeds: grown 0.9747 -> 0.9760, spread 0.0153 -> 0.0084.
    _bp(51, "widen_conv", S, 0.05, 1, (WIDEN,), w.WidenConv, True, channels=ints(2, 32, 16)),
    _bp(52, "widen_deep", S, 0.1, 1, (WIDEN,), w.WidenDeep, True, channels=ints(2, 32, 8)),
)
BY_ID: dict[str, Blueprint] = {blueprint.blueprint_id: blueprint for blueprint in CATALOGUE}


def get(blueprint_id: str) -> Blueprint:
    try:
        return BY_ID[blueprint_id]
    except KeyError:
        raise UnknownBlueprint(
            f"unknown blueprint {blueprint_id!r}; ids run from BP001 to BP{len(CATALOGUE):03d}"
        ) from None


def descriptors() -> list[pb.BlueprintDescriptor]:
    """Every blueprint's metadata, in id order (what Tamiyo and the catalogue projection read)."""
    return [blueprint.descriptor() for blueprint in CATALOGUE]


def validate_parameters(blueprint_id: str, parameters: Mapping[str, float]) -> dict[str, float]:
    """The full parameter set (defaults filled in); rejects unknown names and out-of-range values."""
    blueprint = get(blueprint_id)
    unknown = sorted(set(parameters) - set(blueprint.parameters))
    if unknown:
        names = ", ".join(blueprint.parameters) or "none"
        raise _rejected(
            "parameters",
            ParameterOutOfRange(
                f"{blueprint_id} {blueprint.name}: unknown parameter(s) {', '.join(unknown)}; "
                f"allowed: {names}"
            ),
        )
    resolved = blueprint.defaults()
    for name, value in parameters.items():
        allowed = blueprint.parameters[name]
        value = float(value)
        if not allowed.low <= value <= allowed.high:
            raise _rejected(
                "parameters",
                ParameterOutOfRange(
                    f"{blueprint_id} {blueprint.name}: parameter {name!r} = {value:g} is outside "
                    f"[{allowed.low:g}, {allowed.high:g}]"
                ),
            )
        if allowed.integer and not value.is_integer():
            raise _rejected(
                "parameters",
                ParameterOutOfRange(
                    f"{blueprint_id} {blueprint.name}: parameter {name!r} = {value:g} must be an integer "
                    f"in [{allowed.low:g}, {allowed.high:g}]"
                ),
            )
        resolved[name] = value
    return resolved


def validate_slot(blueprint_id: str, kind: int, shape: Sequence[int]) -> tuple[int, ...]:
    """Checks that the blueprint supports the slot kind and that shape ([C, H, W] or [T, D]) fits it."""
    blueprint = get(blueprint_id)
    if kind not in blueprint.kinds:
        supported = ", ".join(SLOT_KIND_NAMES[k] for k in blueprint.kinds)
        raise _rejected(
            "slot",
            SlotMismatch(
                f"{blueprint_id} {blueprint.name} does not support {SLOT_KIND_NAMES.get(kind, kind)} slots; "
                f"it supports: {supported}"
            ),
        )
    expected = SLOT_RANKS[kind]
    dims = tuple(int(d) for d in shape)
    if len(dims) != expected or min(dims) < 1:
        layout = SLOT_LAYOUTS[kind]
        raise _rejected(
            "slot", SlotMismatch(f"slot shape {list(dims)} must be {expected} positive sizes {layout}")
        )
    return dims


def check_use(blueprint_id: str, use: Use, approved: Collection[str] = ()) -> None:
    """Refuses quarantined blueprints outside drills, and unapproved experimental ones for live use."""
    blueprint = get(blueprint_id)
    if use is Use.LIVE and blueprint.quarantine_only:
        raise _rejected(
            "not_graftable",
            NotGraftable(
                f"{blueprint_id} {blueprint.name} is adversarial (quarantine-only): it can never be grafted "
                "into a live run; use it only in a fault drill"
            ),
        )
    if use is Use.LIVE and blueprint.requires_approval and blueprint_id not in approved:
        raise _rejected(
            "not_graftable",
            NotGraftable(
                f"{blueprint_id} {blueprint.name} is experimental and needs approval before a live graft"
            ),
        )


def seed_for(*parts: object) -> int:
    """A stable 63-bit seed from the parts' text (Python's hash() is salted per process)."""
    digest = hashlib.sha256("|".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def build(
    blueprint_id: str,
    parameters: Mapping[str, float],
    kind: int,
    shape: Sequence[int],
    *,
    use: Use = Use.LIVE,
    approved: Collection[str] = (),
    init_seed: int | None = None,
) -> nn.Module:
    """An eager module for the blueprint. init_seed makes its initial weights reproducible."""
    check_use(blueprint_id, use, approved)
    blueprint = get(blueprint_id)
    resolved = validate_parameters(blueprint_id, parameters)
    dims = validate_slot(blueprint_id, kind, shape)
    module = build_template(blueprint, resolved, kind, dims, init_seed)
    return with_fault(blueprint_id, resolved, module)


def build_template(
    blueprint: Blueprint,
    parameters: Mapping[str, float],
    kind: int,
    shape: tuple[int, ...],
    init_seed: int | None,
) -> nn.Module:
    """The template's tensor computation alone (what Tezzeret compiles); parameters already validated."""
    if init_seed is None:
        return blueprint.factory(kind, shape, parameters)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        return blueprint.factory(kind, shape, parameters)


def with_fault(blueprint_id: str, parameters: Mapping[str, float], module: nn.Module) -> nn.Module:
    """Wraps module in its side-effect fault for BP046–BP049; other blueprints are returned as they are."""
    fault = FAULTS.get(blueprint_id)
    return FaultInjected(module, fault(parameters)) if fault else module


@dataclass(frozen=True)
class SelectionContext:
    run_id: str
    slot: int
    epoch: int
    kind: int
    shape: tuple[int, ...]
    exclude: frozenset[str] = frozenset()  # e.g. blueprints already culled in this slot
    approved: frozenset[str] = frozenset()  # experimental blueprints approved for this run


@cache
def parameter_count(blueprint_id: str, kind: int, shape: tuple[int, ...]) -> int:
    """Trainable parameters of the blueprint at its default parameters on this slot."""
    blueprint = get(blueprint_id)
    module = build_template(blueprint, blueprint.defaults(), kind, shape, init_seed=0)
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def candidates(context: SelectionContext, conservative: bool, budget: int) -> list[Blueprint]:
    """Blueprints eligible for a live graft in this context, in id order."""
    eligible = []
    for blueprint in CATALOGUE:
        if blueprint.quarantine_only or blueprint.blueprint_id in context.exclude:
            continue
        if blueprint.requires_approval and blueprint.blueprint_id not in context.approved:
            continue
        if conservative and not blueprint.conservative:
            continue
        if context.kind not in blueprint.kinds:
            continue
        if parameter_count(blueprint.blueprint_id, context.kind, context.shape) > budget:
            continue
        eligible.append(blueprint)
    return eligible


def select(context: SelectionContext, conservative: bool, budget: int) -> pb.BlueprintDescriptor:
    """A deterministic choice for (run, slot, epoch) among the eligible blueprints.

    Conservative mode draws only from the conservative pool (the lowest-risk safe templates). budget is
    the largest parameter count allowed at default parameters on the slot.
    """
    eligible = candidates(context, conservative, budget)
    if not eligible:
        mode = "conservative pool" if conservative else "catalogue"
        raise KarnError(
            f"no blueprint in the {mode} fits a {SLOT_KIND_NAMES.get(context.kind)} slot "
            f"{list(context.shape)} within {budget} parameters"
        )
    metrics.SELECTIONS.labels("conservative" if conservative else "normal").inc()
    index = seed_for(context.run_id, context.slot, context.epoch) % len(eligible)
    return eligible[index].descriptor()
