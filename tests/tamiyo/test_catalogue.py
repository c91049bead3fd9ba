"""Blueprint choice on Karn's real catalogue: safety filters, risk cap and parameter budget always hold."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from domains.karn import catalog
from domains.karn.blocks import WIDEN
from domains.tamiyo import HeuristicConfig, HeuristicPolicy
from domains.tamiyo.catalogue import heuristic_controller, karn_descriptors, karn_estimator
from domains.tamiyo.outcomes import Outcome
from domains.tamiyo.state import TamiyoState
from leyline import decode_payload, pb
from leyline.seed_metrics import HEADROOM_METRIC
from leyline.signing import Keyring, Signer
from tests.tamiyo.scripted import PLATEAU_LOSSES, RUN_ID, context, observation, packet

SLOTS = {
    0: (pb.SLOT_KIND_CONV2D, (4, 8, 8)),
    1: (pb.SLOT_KIND_CONV2D, (8, 4, 4)),
    2: (pb.SLOT_KIND_CONV2D, (8, 2, 2)),
}
CATALOGUE = tuple(karn_descriptors())
ESTIMATE = karn_estimator(SLOTS)
COSTS = {(d.blueprint_id, slot): ESTIMATE(d, slot) for d in CATALOGUE for slot in SLOTS}
BY_ID = {d.blueprint_id: d for d in CATALOGUE}


def test_estimator_uses_karn_and_refuses_what_cannot_go_there() -> None:
    residual = BY_ID["BP009"]
    assert ESTIMATE(residual, 0) == ESTIMATE(residual, 0) and (ESTIMATE(residual, 0) or 0) > 0
    assert ESTIMATE(residual, 0) != ESTIMATE(residual, 1)  # the cost depends on the slot's shape
    assert ESTIMATE(BY_ID["BP031"], 0) is None  # temporal_conv: sequence slots only
    assert ESTIMATE(residual, 7) is None  # no such slot


@settings(max_examples=60, deadline=None)
@given(
    budget=st.one_of(st.none(), st.integers(min_value=600, max_value=4000)),
    conservative=st.booleans(),
    hook_ms=st.sampled_from([2.0, 20.0, 40.0]),  # risk levels 0, 1, 2
    seed=st.integers(min_value=0, max_value=1000),
    headroom=st.tuples(*(st.floats(0.0, 1.0) for _ in SLOTS)),
)
def test_a_chosen_blueprint_respects_every_constraint(
    budget: int | None, conservative: bool, hook_ms: float, seed: int, headroom: tuple[float, ...]
) -> None:
    config = HeuristicConfig(parameter_budget=budget, seed=seed)
    policy = HeuristicPolicy(config)
    seeds = [
        pb.SeedState(slot=slot, stage=pb.SEED_STAGE_DORMANT, metrics={HEADROOM_METRIC: headroom[slot]})
        for slot in SLOTS
    ]
    state = TamiyoState(validation_losses=(0.5, 0.5, 0.5), conservative=conservative)
    obs = observation(3, 0.5, seeds=seeds, catalogue=CATALOGUE, hook_ms=hook_ms, parameters=670)
    obs = dataclasses.replace(obs, blueprint_costs={k: v for k, v in COSTS.items() if v is not None})
    commands = [p.command for p in policy.decide(state, obs) if isinstance(p, pb.AdaptationCommandIssued)]
    if not commands:
        return
    (command,) = commands
    chosen = BY_ID[command.seed_operation.blueprint_id]
    assert chosen.tier == pb.BLUEPRINT_TIER_SAFE and not chosen.quarantine_only
    assert not chosen.requires_approval
    level = int(command.annotations["risk_level"])
    cap = config.mitigated_blueprint_risk if level >= 1 or conservative else config.max_blueprint_risk
    assert chosen.risk <= cap
    if conservative:
        assert chosen.conservative_pool
    cost = COSTS[(chosen.blueprint_id, command.target_slot)]
    assert cost is not None
    if budget is not None:
        assert 670 + cost <= budget
    # the slot with the most headroom (as stored: float32) that has any eligible blueprint
    stored = {seed.slot: seed.metrics[HEADROOM_METRIC] for seed in seeds}
    assert stored[command.target_slot] == max(
        stored[s] for s in SLOTS if policy.eligible_blueprints(obs, s, level, state.conservative)
    )


def test_the_heuristic_controller_on_karns_catalogue_germinates_within_budget() -> None:
    tamiyo = heuristic_controller(
        RUN_ID, Signer(Keyring.generate()), SLOTS, HeuristicConfig(parameter_budget=670 + 300)
    )
    assert tamiyo.slot_kinds == {0: pb.SLOT_KIND_CONV2D, 1: pb.SLOT_KIND_CONV2D, 2: pb.SLOT_KIND_CONV2D}
    assert len(tamiyo.catalogue) == len(catalog.CATALOGUE) == 52
    seeds = [pb.SeedState(slot=slot, stage=pb.SEED_STAGE_DORMANT) for slot in SLOTS]
    for epoch, loss in enumerate(PLATEAU_LOSSES):
        output = tamiyo.decide(packet(epoch, loss), context(epoch, seeds, parameters=670, catalogue=()))
        if output.command is not None:
            break
    assert output.command is not None
    issued = decode_payload(output.command)
    assert isinstance(issued, pb.AdaptationCommandIssued)
    command = issued.command
    cost = COSTS[(command.seed_operation.blueprint_id, command.target_slot)]
    assert cost is not None and 0 < cost <= 300


def test_on_a_28x28_host_the_first_graft_at_the_wide_map_acts_on_its_input() -> None:
    """cnn-lite on Fashion-MNIST: a learned position table on slot 0's 4×28×28 map would be 3,136
    input-independent parameters (a bias image) that the capacity prior, which reads parameter counts,
    ranked above the residual block; position tables go on sequence slots only."""
    fashion = {
        0: (pb.SLOT_KIND_CONV2D, (4, 28, 28)),
        1: (pb.SLOT_KIND_CONV2D, (8, 14, 14)),
        2: (pb.SLOT_KIND_CONV2D, (8, 7, 7)),
    }
    estimate = karn_estimator(fashion)
    assert estimate(BY_ID["BP035"], 0) is None
    assert karn_estimator({0: (pb.SLOT_KIND_SEQUENCE, (32, 16))})(BY_ID["BP035"], 0) == 32 * 16
    costs = {(d.blueprint_id, s): estimate(d, s) for d in CATALOGUE for s in fashion}
    seeds = [
        pb.SeedState(slot=slot, stage=pb.SEED_STAGE_DORMANT, metrics={HEADROOM_METRIC: 1.0 - slot / 4})
        for slot in fashion
    ]
    obs = observation(3, 0.5, seeds=seeds, catalogue=CATALOGUE, parameters=4266)
    obs = dataclasses.replace(obs, blueprint_costs={k: v for k, v in costs.items() if v is not None})
    state = TamiyoState(validation_losses=(0.5, 0.5, 0.5))
    decided = HeuristicPolicy(HeuristicConfig()).decide(state, obs)
    (command,) = [p.command for p in decided if isinstance(p, pb.AdaptationCommandIssued)]
    assert (command.target_slot, command.seed_operation.blueprint_id) == (0, "BP009")


WIDENED = {**SLOTS, 3: (pb.SLOT_KIND_WIDEN, (4, 8, 8, 10))}
WIDEN_COSTS = {
    (d.blueprint_id, slot): cost
    for d in CATALOGUE
    for slot in WIDENED
    if (cost := karn_estimator(WIDENED)(d, slot)) is not None
}


def germinated_at(outcomes: tuple[Outcome, ...], stages: dict[int, int]) -> tuple[int, str]:
    """Where the heuristic germinates with slot 3 a widening and the least headroom of all."""
    policy = HeuristicPolicy(HeuristicConfig())
    seeds = [
        pb.SeedState(slot=slot, stage=stages.get(slot, pb.SEED_STAGE_DORMANT), metrics={HEADROOM_METRIC: h})
        for slot, h in zip(WIDENED, (0.3, 0.9, 0.5, 0.01), strict=True)
    ]
    state = TamiyoState(validation_losses=(0.5, 0.5, 0.5), outcomes=outcomes)
    obs = observation(3, 0.5, seeds=seeds, catalogue=CATALOGUE, parameters=670)
    kinds = {slot: kind for slot, (kind, _) in WIDENED.items()}
    obs = dataclasses.replace(obs, blueprint_costs=WIDEN_COSTS, slot_kinds=kinds)
    (command,) = [p.command for p in policy.decide(state, obs) if isinstance(p, pb.AdaptationCommandIssued)]
    return command.target_slot, command.seed_operation.blueprint_id


def test_an_open_widening_is_tried_first_then_slots_by_headroom() -> None:
    slot, blueprint = germinated_at((), {})
    assert slot == 3 and WIDEN in BY_ID[blueprint].slot_kinds
    # its blueprints culled there: the outcome rule moves on, to the slot with the most headroom
    culled = tuple(Outcome(3, d.blueprint_id, 0.0, True) for d in CATALOGUE if WIDEN in d.slot_kinds)
    assert germinated_at(culled, {})[0] == 1
    assert germinated_at((), {3: pb.SEED_STAGE_TRAINING})[0] == 1  # a widening in flight: the others
