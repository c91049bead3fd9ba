"""Masking as a property: over random layouts, seeds, catalogues and risk, no illegal action is sampled."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from domains.tamiyo.config import HeuristicConfig
from domains.tamiyo.gnn.graph import BLUEPRINT_DIM, blueprint_rows, build_graph
from domains.tamiyo.gnn.masking import CULL, GERMINATE, NOOP, OPERATIONS, ActionMask, legal_actions
from domains.tamiyo.gnn.network import PolicyNetwork
from domains.tamiyo.gnn.record import policy_observation
from domains.tamiyo.gnn.sampling import sample
from domains.tamiyo.gnn.tensors import of_hetero
from domains.tamiyo.observation import Observation
from domains.tamiyo.policy import HeuristicPolicy
from domains.tamiyo.state import TamiyoState
from leyline import pb
from leyline.lifecycle import LifecycleConfig

STAGES = list(range(1, 12))
NETWORK = PolicyNetwork()  # one set of random weights; the sampler's draws vary with the generator seed
with torch.no_grad():  # make every head's logits large and varied, so masked choices would be likely
    for parameter in NETWORK.parameters():
        parameter.mul_(6.0)


@st.composite
def descriptors(draw: st.DrawFn, index: int) -> pb.BlueprintDescriptor:
    return pb.BlueprintDescriptor(
        blueprint_id=f"BP{index:03d}",
        tier=draw(
            st.sampled_from(
                [pb.BLUEPRINT_TIER_SAFE, pb.BLUEPRINT_TIER_EXPERIMENTAL, pb.BLUEPRINT_TIER_ADVERSARIAL]
            )
        ),
        risk=draw(st.floats(0.0, 1.0)),
        slot_kinds=draw(
            st.lists(st.sampled_from([pb.SLOT_KIND_CONV2D, pb.SLOT_KIND_SEQUENCE]), max_size=2, unique=True)
        ),
        requires_approval=draw(st.booleans()),
        approved=draw(st.booleans()),
        quarantine_only=draw(st.booleans()),
        conservative_pool=draw(st.booleans()),
    )


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[Observation, TamiyoState, HeuristicConfig, int, bool, pb.HostTopology]:
    slot_count = draw(st.integers(1, 6))
    layers = draw(st.integers(1, 5))
    slot_ids = sorted(
        draw(st.lists(st.integers(0, 40), min_size=slot_count, max_size=slot_count, unique=True))
    )
    kinds = {s: draw(st.sampled_from([pb.SLOT_KIND_CONV2D, pb.SLOT_KIND_SEQUENCE])) for s in slot_ids}
    topology = pb.HostTopology(
        layers=[
            pb.HostLayer(
                name=f"l{i}", kind="linear", parameter_sizes=[4, 2], parameter_ranks=[2, 1], output_shape=[2]
            )
            for i in range(layers)
        ],
        slots=[
            pb.HostSlot(
                slot=s,
                kind=kinds[s],
                shape=[2, 2, 2] if kinds[s] == pb.SLOT_KIND_CONV2D else [2, 2],
                after_layer=draw(st.integers(0, layers - 1)),
            )
            for s in slot_ids
        ],
    )
    seeds = tuple(pb.SeedState(slot=s, stage=draw(st.sampled_from(STAGES))) for s in slot_ids)
    catalogue = tuple(draw(descriptors(i)) for i in range(draw(st.integers(1, 8))))
    costs = {
        (d.blueprint_id, s): draw(st.integers(0, 5000))
        for d in catalogue
        for s in slot_ids
        if draw(st.booleans())
    }
    epoch = 10
    culls = tuple((s, draw(st.integers(0, epoch))) for s in slot_ids if draw(st.booleans()))
    config = HeuristicConfig(
        max_concurrent_seeds=draw(st.integers(0, 3)),
        parameter_budget=draw(st.one_of(st.none(), st.integers(700, 5000))),
        max_blueprint_risk=draw(st.floats(0.0, 1.0)),
        mitigated_blueprint_risk=draw(st.floats(0.0, 1.0)),
    )
    observation = Observation(
        run_id="r",
        epoch=epoch,
        packet_id=draw(st.integers(1, 2**32)),
        training_loss=1.0,
        validation_loss=1.0,
        validation_accuracy=0.5,
        grad_norm=1.0,
        memory_pressure=0.0,
        hook_ms=1.0,
        parameters=700,
        seeds=seeds,
        catalogue=catalogue,
        applied_commands=(),
        command_id="c",
        now_ms=0,
        blueprint_costs=costs,
        slot_kinds=kinds,
        lifecycle=LifecycleConfig(embargo_epochs=draw(st.integers(0, 5))),
        run_epochs=draw(st.one_of(st.none(), st.integers(epoch, epoch + 25))),
    )
    state = dataclasses.replace(TamiyoState(), cull_epochs=culls)
    return observation, state, config, draw(st.integers(0, 4)), draw(st.booleans()), topology


def legal(
    observation: Observation,
    state: TamiyoState,
    config: HeuristicConfig,
    level: int,
    conservative: bool,
    slot: int,
    blueprint: pb.BlueprintDescriptor | None,
    operation: int,
) -> bool:
    """The oracle: the rules spelled out independently of the masks."""
    seed = next(s for s in observation.seeds if s.slot == slot)
    if operation == CULL:
        return seed.stage in (
            pb.SEED_STAGE_GERMINATED,
            pb.SEED_STAGE_TRAINING,
            pb.SEED_STAGE_BLENDING,
            pb.SEED_STAGE_SHADOWING,
            pb.SEED_STAGE_PROBATIONARY,
        )
    assert blueprint is not None and operation == GERMINATE
    active = sum(1 for s in observation.seeds if s.stage in (2, 3, 4, 5, 6))
    limit = min(config.max_concurrent_seeds, 1) if conservative else config.max_concurrent_seeds
    culled = state.cull_epoch(slot)
    cap = config.mitigated_blueprint_risk if level >= 1 or conservative else config.max_blueprint_risk
    cost = observation.blueprint_costs.get((blueprint.blueprint_id, slot))
    limits = observation.lifecycle
    ramp = limits.alpha_ramp_epochs
    if level >= 1 or conservative:
        ramp = max(ramp, config.mitigated_alpha_ramp_epochs)
    # the seed's verdict: germinated, training, blending (its ramp), shadowing, probation
    verdict = observation.epoch + 1 + limits.min_training_epochs + ramp + 1 + limits.probation_epochs
    return (
        seed.stage == pb.SEED_STAGE_DORMANT
        and (culled is None or observation.epoch - culled >= observation.lifecycle.embargo_epochs)
        and level < config.block_level
        and active < limit
        and (observation.run_epochs is None or verdict <= observation.run_epochs)
        and not blueprint.quarantine_only
        and (
            blueprint.tier == pb.BLUEPRINT_TIER_SAFE
            or (blueprint.tier == pb.BLUEPRINT_TIER_EXPERIMENTAL and blueprint.approved)
        )
        and (blueprint.approved or not blueprint.requires_approval)
        # an operator's approval accepts the blueprint's own risk, at the calm level only
        and (blueprint.risk <= cap or (blueprint.requires_approval and level == 0 and not conservative))
        and (blueprint.conservative_pool or not conservative)
        and (not blueprint.slot_kinds or observation.slot_kinds[slot] in blueprint.slot_kinds)
        and (
            config.parameter_budget is None
            or (cost is not None and observation.parameters + cost <= config.parameter_budget)
        )
    )


@settings(max_examples=60, deadline=None)
@given(scenarios(), st.integers(0, 2**31))
def test_an_illegal_action_is_never_sampled(scenario: tuple, generator_seed: int) -> None:
    observation, state, config, level, conservative, topology = scenario
    policy = HeuristicPolicy(config)
    slot_order = [s.slot for s in topology.slots]
    mask = legal_actions(policy, state, observation, level, conservative, slot_order)
    for i, slot in enumerate(slot_order):
        assert mask.slot[1, i] == legal(observation, state, config, level, conservative, slot, None, CULL)
        for j, blueprint in enumerate(observation.catalogue):
            assert mask.blueprint[i, j] == legal(
                observation, state, config, level, conservative, slot, blueprint, GERMINATE
            )
    record = policy_observation(observation, topology, level, conservative, mask, [], False)
    features = torch.tensor(blueprint_rows(observation.catalogue), dtype=torch.float32).reshape(
        -1, BLUEPRINT_DIM
    )
    data = build_graph(record, features)
    for offset in range(8):
        drawn = sample(NETWORK, data, torch.Generator().manual_seed(generator_seed + offset))
        assert 0.0 < drawn.probability <= 1.0
        assert drawn.operation == NOOP or mask.allows(drawn.operation, drawn.slot, drawn.blueprint)
        if drawn.operation != NOOP:
            slot = slot_order[drawn.slot]
            blueprint = observation.catalogue[drawn.blueprint] if drawn.operation == GERMINATE else None
            assert legal(observation, state, config, level, conservative, slot, blueprint, drawn.operation), (
                OPERATIONS[drawn.operation]
            )
    greedy = sample(NETWORK, data, None)
    assert greedy == sample(NETWORK, data, None)
    assert greedy.operation == NOOP or mask.allows(greedy.operation, greedy.slot, greedy.blueprint)
    graph = of_hetero(data)
    with torch.no_grad():
        logits = NETWORK(graph)["operation"][0].masked_fill(~graph.legal_op[0], -torch.inf)
    assert greedy.operation == int(logits.argmax())


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 12), st.integers(0, 60), st.data())
def test_packed_masks_round_trip(slots: int, blueprints: int, data: st.DataObject) -> None:
    bits = data.draw(
        st.lists(
            st.booleans(),
            min_size=3 + 2 * slots + slots * blueprints,
            max_size=3 + 2 * slots + slots * blueprints,
        )
    )
    array = np.array(bits)
    mask = ActionMask(
        array[:3],
        array[3 : 3 + 2 * slots].reshape(2, slots),
        array[3 + 2 * slots :].reshape(slots, blueprints),
    )
    again = ActionMask.unpack(mask.pack(), slots, blueprints)
    assert np.array_equal(again.operation, mask.operation) and np.array_equal(again.slot, mask.slot)
    assert np.array_equal(again.blueprint, mask.blueprint)
