"""The end-of-epoch hook's latency at a boundary that carried out Tamiyo's own seed command is that
command's cost (a graft loads, and may compile, its module inside the hook), not a health signal: it
neither raises the risk level nor enters conservative mode, and the decision records what was measured."""

from __future__ import annotations

import pytest

from domains.tamiyo import HeuristicConfig, HeuristicPolicy
from domains.tamiyo.controller import TamiyoController
from domains.tamiyo.observation import HOOK_ACTION_COST, hook_action_cost, risk_signals
from domains.tamiyo.state import TamiyoState, TrackedCommand
from leyline import decode_payload, pb
from leyline.signing import Keyring, Signer
from tests.tamiyo.scripted import RUN_ID, context, estimate, observation, packet

BUDGET_MS = 18.0
GRAFT_HOOK_MS = 500.0  # a graft that loaded its module inside the hook: 27.8× the budget, level 4


def controller() -> TamiyoController:
    # Grows at the first epoch whose loss did not improve by half (the defaults' plateau test).
    return TamiyoController(
        RUN_ID, Signer(Keyring.generate()), HeuristicPolicy(HeuristicConfig()), parameter_estimator=estimate
    )


def germinated(tamiyo: TamiyoController) -> tuple[int, str]:
    """Decide until Tamiyo germinates; the epoch and the command id."""
    for epoch, loss in enumerate((1.0, 0.9, 0.89, 0.89, 0.89)):
        output = tamiyo.decide(packet(epoch, loss), context(epoch))
        if output.command is not None:
            issued = decode_payload(output.command)
            assert isinstance(issued, pb.AdaptationCommandIssued)
            assert issued.command.annotations["action"] == "germinate"
            return epoch, issued.command.command_id
    raise AssertionError("the heuristic never germinated")


def decision_after(tamiyo: TamiyoController, epoch: int, applied: tuple[str, ...]) -> pb.DecisionMade:
    output = tamiyo.decide(packet(epoch, 0.89), context(epoch, hook_ms=GRAFT_HOOK_MS, applied=applied))
    (envelope,) = [e for e in output.events if e.event_type == "DecisionMade"]
    decision = decode_payload(envelope)
    assert isinstance(decision, pb.DecisionMade)
    return decision


def test_an_applied_graft_s_hook_overrun_is_its_cost_not_a_risk() -> None:
    tamiyo = controller()
    epoch, command_id = germinated(tamiyo)
    # Tolaria reports the overrun of the boundary that carried out the graft: the mode stays as it is.
    assert tamiyo.enter_conservative_mode("end-of-epoch hook took 500.0 ms, budget 18.0 ms", epoch) == []
    assert not tamiyo.state.conservative
    decision = decision_after(tamiyo, epoch + 1, applied=(command_id,))
    inputs = decision.inputs_summary
    assert inputs[HOOK_ACTION_COST] == 1.0
    assert inputs["hook_ms"] == GRAFT_HOOK_MS
    assert inputs["hook_latency_measured"] == pytest.approx(GRAFT_HOOK_MS / BUDGET_MS)
    assert inputs["signal_hook_latency_ratio"] == 0.0 and inputs["level_hook_latency_ratio"] == 0.0
    assert decision.risk_level - 1 < 3 and not decision.conservative
    assert tamiyo.state.raw_levels[-1] < 3  # the hysteresis keeps nothing of it either


def test_the_same_overrun_without_an_applied_command_is_a_risk() -> None:
    tamiyo = controller()
    epoch, _ = germinated(tamiyo)
    decision = decision_after(tamiyo, epoch + 1, applied=())  # Kasmina rejected the graft
    inputs = decision.inputs_summary
    assert HOOK_ACTION_COST not in inputs
    assert inputs["signal_hook_latency_ratio"] == pytest.approx(GRAFT_HOOK_MS / BUDGET_MS)
    assert inputs["level_hook_latency_ratio"] == 4.0 and decision.risk_level - 1 == 4
    assert decision.conservative and decision.action == "noop"


def test_an_overrun_at_a_boundary_without_a_command_enters_conservative_mode() -> None:
    tamiyo = controller()
    epoch, _ = germinated(tamiyo)
    assert tamiyo.enter_conservative_mode("overran", epoch - 1) != []  # an earlier boundary's overrun
    assert tamiyo.state.conservative


def tracked(action: str) -> TrackedCommand:
    return TrackedCommand("c1", 3, action, 0, 1, "BP009", 0, "heuristic-1.0", 0.9, 0.4, 700)


@pytest.mark.parametrize(
    ("action", "applied", "discounted"),
    [
        ("germinate", True, True),
        ("cull", True, True),
        ("advance", True, True),
        ("rollback", True, False),  # granted in the hook, applied after it: not in the hook's time
        ("germinate", False, False),
    ],
)
def test_which_commands_the_hook_latency_is_the_cost_of(action: str, applied: bool, discounted: bool) -> None:
    state = TamiyoState(pending=(tracked(action),), last_epoch=3)
    seen = observation(4, 0.5, hook_ms=GRAFT_HOOK_MS, applied=("c1",) if applied else ())
    assert hook_action_cost(state, seen) is discounted
    signal = risk_signals(state, seen).hook_latency_ratio
    assert signal == (0.0 if discounted else pytest.approx(GRAFT_HOOK_MS / BUDGET_MS))
