"""The recorded PolicyObservation carries the heuristic's plateau reading, and the graph reads it."""

from __future__ import annotations

import dataclasses

import pytest

from domains.tamiyo.gnn.graph import GLOBAL_DIM, policy_graph
from domains.tamiyo.gnn.record import LOSS_PLATEAU, ObservationRecorder
from domains.tamiyo.observation import Observation, loss_plateau
from domains.tamiyo.policy import HeuristicPolicy
from domains.tamiyo.state import TamiyoState
from leyline import pb
from leyline.lifecycle import LifecycleConfig
from tests.tamiyo.gnn.support import topology


def observation(shape: pb.HostTopology, validation_loss: float) -> Observation:
    return Observation(
        run_id="r",
        epoch=5,
        packet_id=1,
        training_loss=1.0,
        validation_loss=validation_loss,
        validation_accuracy=0.5,
        grad_norm=1.0,
        memory_pressure=0.0,
        hook_ms=1.0,
        parameters=700,
        seeds=tuple(pb.SeedState(slot=s.slot, stage=pb.SEED_STAGE_DORMANT) for s in shape.slots),
        catalogue=(),
        applied_commands=(),
        command_id="c",
        now_ms=0,
        blueprint_costs={},
        slot_kinds={s.slot: s.kind for s in shape.slots},
        lifecycle=LifecycleConfig(),
        run_epochs=None,
    )


# the default plateau: window 1, epsilon 0.5 (an epoch that improves the best loss by less than half)
@pytest.mark.parametrize(("history", "loss", "expected"), [((1.0,), 0.8, True), ((1.0,), 0.4, False)])
def test_the_plateau_feature_is_the_heuristics_germination_signal(
    history: tuple[float, ...], loss: float, expected: bool
) -> None:
    shape = topology("cnn-lite")
    policy = HeuristicPolicy()
    state = dataclasses.replace(TamiyoState(), validation_losses=history)
    seen = observation(shape, loss)
    assert loss_plateau(policy.config, state, seen) is expected
    decision = policy.decide(state, seen)[0]
    assert isinstance(decision, pb.DecisionMade)
    assert (decision.reason == "validation loss still improving") is not expected
    _, record = ObservationRecorder(shape).record(policy, state, seen, 0, False)
    assert record.packet.metrics[LOSS_PLATEAU] == (1.0 if expected else 0.0)
    u = policy_graph(record).u
    assert u.shape == (1, GLOBAL_DIM) and u[0, -1].item() == (1.0 if expected else 0.0)
