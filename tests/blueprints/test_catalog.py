"""Karn's catalogue: the 50 blueprints of SPEC §9 and the two widenings, their metadata, parameter
validation, use checks and registration in the log."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domains.karn import building, catalog, registration
from domains.karn.blocks import CONV, SEQUENCE, WIDEN
from domains.karn.blueprint import (
    ADVERSARIAL,
    EXPERIMENTAL,
    SAFE,
    KarnError,
    NotGraftable,
    ParameterOutOfRange,
    SlotMismatch,
    Use,
)
from eventstore import EventStore
from leyline import decode_payload, pb

SPEC_NAMES = [
    "identity_passthrough",
    "linear_projection",
    "layer_norm_basic",
    "dropout_light",
    "relu_activation",
    "batch_norm_1d",
    "pooling_max",
    "skip_connection",
    "residual_block",
    "concat_fusion",
    "gelu_activation",
    "layer_scaling",
    "grouped_conv",
    "highway_gate",
    "depthwise_separable",
    "squeeze_excitation",
    "channel_attention",
    "spatial_attention",
    "cross_attention",
    "attention_single_head",
    "feedforward_gated",
    "multi_head_attention_4",
    "transformer_block",
    "conv_transformer",
    "dynamic_conv",
    "adaptive_pooling",
    "feature_pyramid",
    "dense_connection",
    "multi_head_attention_8",
    "graph_attention",
    "temporal_conv",
    "dilated_conv",
    "deformable_conv",
    "non_local_block",
    "learned_positional",
    "mixture_of_experts_4",
    "hierarchical_attention",
    "memory_augmented",
    "neural_ode_block",
    "differentiable_nas",
    "meta_learning_layer",
    "recursive_processing",
    "exploding_gradient",
    "vanishing_gradient",
    "nan_injection",
    "infinite_loop",
    "memory_leak",
    "deadlock_pattern",
    "race_condition",
    "adversarial_noise",
]
WIDENINGS = ["widen_conv", "widen_deep"]  # BP051-BP052, beyond SPEC §9: widening slots only


def test_the_fifty_blueprints_of_the_spec() -> None:
    descriptors = catalog.descriptors()
    assert [d.blueprint_id for d in descriptors] == [f"BP{n:03d}" for n in range(1, 53)]
    assert [d.name for d in descriptors] == SPEC_NAMES + WIDENINGS
    assert [d.slot_kinds for d in descriptors[50:]] == [[WIDEN], [WIDEN]]
    for d in descriptors:
        number = int(d.blueprint_id[2:])
        if number <= 35 or number > 50:  # BP051-BP052: the widenings
            assert d.tier == SAFE and 0.0 <= d.risk <= 0.5 and d.curriculum_stage <= 4
            assert d.approved and not d.requires_approval and not d.quarantine_only
        elif number <= 42:
            assert d.tier == EXPERIMENTAL and 0.5 <= d.risk <= 0.8 + 1e-6 and d.curriculum_stage == 5
            assert d.requires_approval and not d.approved
        else:
            assert d.tier == ADVERSARIAL and 0.8 <= d.risk <= 1.0 and d.curriculum_stage == 6
            assert d.quarantine_only and not d.approved
        assert d.slot_kinds and d.description
        for name, allowed in d.parameter_ranges.items():
            assert allowed.min <= allowed.default <= allowed.max, name


def test_conservative_pool_is_the_lowest_risk_safe_templates() -> None:
    descriptors = catalog.descriptors()
    pool = [d for d in descriptors if d.conservative_pool]
    others = [d for d in descriptors if not d.conservative_pool]
    assert len(pool) >= 5
    assert all(d.tier == SAFE for d in pool)
    assert max(d.risk for d in pool) <= min(d.risk for d in others if d.tier == SAFE) + 0.05


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_values_inside_ranges_are_accepted_and_outside_rejected_naming_the_range(data: st.DataObject) -> None:
    blueprint = data.draw(st.sampled_from([b for b in catalog.CATALOGUE if b.parameters]))
    name = data.draw(st.sampled_from(sorted(blueprint.parameters)))
    allowed = blueprint.parameters[name]
    if allowed.integer:
        inside: float = data.draw(st.integers(int(allowed.low), int(allowed.high)))
    else:
        inside = data.draw(st.floats(allowed.low, allowed.high))
    resolved = catalog.validate_parameters(blueprint.blueprint_id, {name: inside})
    assert resolved[name] == inside and set(resolved) == set(blueprint.parameters)

    span = allowed.high - allowed.low
    outside = data.draw(
        st.one_of(
            st.floats(allowed.high + span * 0.01 + 1, allowed.high * 10 + 100),
            st.floats(allowed.low - allowed.high * 10 - 100, allowed.low - span * 0.01 - 1),
        )
    )
    with pytest.raises(ParameterOutOfRange) as raised:
        catalog.validate_parameters(blueprint.blueprint_id, {name: outside})
    message = str(raised.value)
    assert repr(name) in message and f"[{allowed.low:g}, {allowed.high:g}]" in message


def test_other_parameter_errors() -> None:
    with pytest.raises(ParameterOutOfRange, match="must be an integer"):
        catalog.validate_parameters("BP009", {"hidden": 4.5})
    with pytest.raises(ParameterOutOfRange, match=r"unknown parameter\(s\) width; allowed: hidden"):
        catalog.validate_parameters("BP009", {"width": 4})
    with pytest.raises(KarnError, match="unknown blueprint 'BP053'"):
        catalog.validate_parameters("BP053", {})
    with pytest.raises(SlotMismatch, match="supports: widen"):
        catalog.validate_slot("BP051", CONV, (8, 8, 8))
    with pytest.raises(SlotMismatch, match=r"\[C, H, W, K\]"):
        catalog.validate_slot("BP051", WIDEN, (8, 8, 8))
    with pytest.raises(SlotMismatch, match="supports: sequence"):
        catalog.validate_slot("BP031", CONV, (8, 8, 8))
    with pytest.raises(SlotMismatch, match=r"\[T, D\]"):
        catalog.validate_slot("BP002", SEQUENCE, (8, 8, 8))


def test_adversarial_blueprints_are_never_built_for_live_use() -> None:
    for blueprint in catalog.CATALOGUE:
        if blueprint.quarantine_only:
            with pytest.raises(NotGraftable, match="never be grafted"):
                building.build(blueprint.blueprint_id, {}, CONV, (4, 4, 4))
            drill = building.build(blueprint.blueprint_id, {}, CONV, (4, 4, 4), use=Use.DRILL)
            assert drill is not None
    with pytest.raises(NotGraftable, match="needs approval"):
        building.build("BP040", {}, CONV, (4, 4, 4))
    assert building.build("BP040", {}, CONV, (4, 4, 4), approved={"BP040"}) is not None


def test_registration_is_idempotent(store: EventStore) -> None:
    assert registration.register_catalogue(store) == 52
    assert registration.register_catalogue(store) == 0
    events = list(store.read_all())
    assert len(events) == 52
    first = events[8]
    assert first.stream == "blueprint-BP009" and first.event_type == "BlueprintRegistered"
    payload = decode_payload(first)
    assert isinstance(payload, pb.BlueprintRegistered) and payload.descriptor.name == "residual_block"


def test_a_changed_descriptor_is_registered_again() -> None:
    descriptors = catalog.descriptors()
    registered: registration.Registered = {}
    for event in registration.decide(registered, descriptors):
        registered = registration.evolve(registered, event)
    changed = pb.BlueprintDescriptor()
    changed.CopyFrom(descriptors[0])
    changed.risk = 0.01
    assert [
        e.descriptor.blueprint_id for e in registration.decide(registered, [changed, *descriptors[1:]])
    ] == ["BP001"]
