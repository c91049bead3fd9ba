"""The torch modules behind Karn's 50 blueprints (SPEC §9), one short module class per blueprint, by tier.

Every template is built as `Template(kind, shape, params)` where kind is a leyline SlotKind, shape the
slot's shape without the batch dimension ([C, H, W] or [T, D]) and params the validated parameters; its
forward maps a batch of that shape to an output of the same shape. Integer parameters arrive as floats
and are converted there. Faults that are side effects rather than tensor computation (busy waits,
retained memory, lock inversion, unsynchronised threads) live in domains/karn/faults.py; the shared
building blocks are in domains/karn/blocks.py. Safe BP001–BP014 are in elementary.py, BP015–BP035 in
composite.py, experimental BP036–BP042 in experimental.py, adversarial BP043–BP050 in adversarial.py.
"""

from __future__ import annotations

from domains.karn.templates.adversarial import (
    AdversarialNoise,
    ExplodingGradient,
    FaultCarrier,
    NanInjection,
    VanishingGradient,
)
from domains.karn.templates.base import Params, Shape, Template
from domains.karn.templates.composite import (
    AdaptivePooling,
    AttentionHeads,
    AttentionSingleHead,
    ChannelAttention,
    ConvTransformer,
    CrossAttention,
    DeformableConv,
    DenseConnection,
    DepthwiseSeparable,
    DilatedConv,
    DynamicConv,
    FeaturePyramid,
    FeedforwardGated,
    GraphAttention,
    LearnedPositional,
    MultiHeadAttention4,
    MultiHeadAttention8,
    NonLocalBlock,
    SpatialAttention,
    SqueezeExcitation,
    TemporalConv,
    TransformerBlock,
)
from domains.karn.templates.elementary import (
    BatchNorm1d,
    ConcatFusion,
    DropoutLight,
    GeluActivation,
    GroupedConv,
    HighwayGate,
    IdentityPassthrough,
    LayerNormBasic,
    LayerScaling,
    LinearProjection,
    PoolingMax,
    ReluActivation,
    ResidualBlock,
    SkipConnection,
)
from domains.karn.templates.experimental import (
    DifferentiableNas,
    HierarchicalAttention,
    MemoryAugmented,
    MetaLearningLayer,
    MixtureOfExperts4,
    NeuralOdeBlock,
    RecursiveProcessing,
)

__all__ = [
    "AdaptivePooling",
    "AdversarialNoise",
    "AttentionHeads",
    "AttentionSingleHead",
    "BatchNorm1d",
    "ChannelAttention",
    "ConcatFusion",
    "ConvTransformer",
    "CrossAttention",
    "DeformableConv",
    "DenseConnection",
    "DepthwiseSeparable",
    "DifferentiableNas",
    "DilatedConv",
    "DropoutLight",
    "DynamicConv",
    "ExplodingGradient",
    "FaultCarrier",
    "FeaturePyramid",
    "FeedforwardGated",
    "GeluActivation",
    "GraphAttention",
    "GroupedConv",
    "HierarchicalAttention",
    "HighwayGate",
    "IdentityPassthrough",
    "LayerNormBasic",
    "LayerScaling",
    "LearnedPositional",
    "LinearProjection",
    "MemoryAugmented",
    "MetaLearningLayer",
    "MixtureOfExperts4",
    "MultiHeadAttention4",
    "MultiHeadAttention8",
    "NanInjection",
    "NeuralOdeBlock",
    "NonLocalBlock",
    "Params",
    "PoolingMax",
    "RecursiveProcessing",
    "ReluActivation",
    "ResidualBlock",
    "Shape",
    "SkipConnection",
    "SpatialAttention",
    "SqueezeExcitation",
    "Template",
    "TemporalConv",
    "TransformerBlock",
    "VanishingGradient",
]
