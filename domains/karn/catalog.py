"""Karn's catalogue: the 50 blueprints of SPEC §9 and two widenings (BP051, BP052: widening slots only,
see widening.py) with their metadata, and the validation of a request against them (parameters, slot,
use). What a blueprint is lives in blueprint.py, building one in building.py.

Tiers: BP001–BP035 safe (risk 0.0–0.5, curriculum stages 0–4), BP036–BP042 experimental (risk 0.5–0.8,
stage 5, live use needs approval), BP043–BP050 adversarial (risk 0.8–1.0, stage 6, quarantine-only:
built only for fault drills and offline training, never for a live graft).

The 50-entry table of SPEC §9 (about 210 lines) stays in one place, beside the validation that reads it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from domains.karn import metrics
from domains.karn import templates as t
from domains.karn import widening as w
from domains.karn.blocks import CONV, SEQUENCE, SLOT_LAYOUTS, SLOT_RANKS, WIDEN
from domains.karn.blueprint import (
    ADVERSARIAL,
    BOTH,
    EXPERIMENTAL,
    SAFE,
    SLOT_KIND_NAMES,
    Blueprint,
    Factory,
    KarnError,
    NotGraftable,
    ParameterOutOfRange,
    Range,
    SlotMismatch,
    UnknownBlueprint,
    Use,
    ints,
    reals,
)
from leyline import pb


def _rejected(reason: str, error: KarnError) -> KarnError:
    metrics.REJECTED.labels(reason).inc()
    return error


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
    # 5 seeds: grown 0.9747 -> 0.9760, spread 0.0153 -> 0.0084. 32 channels, Fashion-MNIST seeds 0-9: grown
    # 0.8980 at 23,776 parameters (16: 15,776), +0.0017 over 16 on seeds 0-3 (-0.0016 to +0.0035): within
    # the seeds' noise for half as many parameters again, so 16 stays.
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
