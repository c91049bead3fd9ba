"""Gates decide on evidence, not noise: G2's paired per-example test, G1's lowest gap since admission."""

from __future__ import annotations

import math
import random

import torch
from hypothesis import given
from hypothesis import strategies as st

from domains.kasmina import Evaluation
from domains.kasmina import lifecycle as lc
from domains.kasmina.commands import Cull, Germinate, Tick
from domains.kasmina.evidence import CONFIDENCE_Z, paired
from domains.kasmina.gates import Measurements, Outcome, gate_g0, gate_g1, gate_g2, gate_g3, gate_g4
from domains.kasmina.probes import EpochMeasurements
from domains.kasmina.state import KasminaState, SlotState
from leyline import decode_payload, pb
from leyline.lifecycle import BLENDING, PROBATIONARY, SHADOWING, TRAINING, LifecycleConfig
from tests.kasmina.helpers import TinyCNN
from tests.kasmina.test_torch import stages, to_training

CONFIG = LifecycleConfig()  # host_loss_tolerance 0.05
BLENDING_SLOT = SlotState(slot=0, stage=BLENDING, seed_id=1, stage_epoch=10, alpha_ramp_epochs=3)
SHADOWING_SLOT = SlotState(slot=0, stage=SHADOWING, seed_id=1, stage_epoch=10)
PROBATION_SLOT = SlotState(slot=0, stage=PROBATIONARY, seed_id=1, stage_epoch=10)


def blending(deltas: list[float], loss_alpha0: float = 1.0) -> Measurements:
    return Measurements(
        host_loss=loss_alpha0 + sum(deltas) / len(deltas), loss_alpha0=loss_alpha0, blend_deltas=tuple(deltas)
    )


def test_a_seed_whose_effect_is_noise_on_179_examples_is_not_culled() -> None:
    rng = random.Random(0)
    noise = [rng.gauss(0.0, 0.5) for _ in range(179)]
    deltas = [d - sum(noise) / len(noise) + 0.06 for d in noise]  # mean +0.06: "6 % worse" by the old rule
    gate = gate_g2(BLENDING_SLOT, 13, blending(deltas), CONFIG)
    assert gate.outcome is Outcome.PASS, gate.reason
    assert gate.measured["delta_n"] == 179 and gate.measured["threshold"] == CONFIG.host_loss_tolerance
    assert gate.measured["delta_mean"] > gate.measured["threshold"] > gate.measured["delta_lower"]
    assert gate.measured["confidence_z"] == CONFIDENCE_Z


def test_a_seed_that_clearly_degrades_the_host_is_culled_with_its_evidence() -> None:
    rng = random.Random(1)
    deltas = [0.2 + rng.gauss(0.0, 0.05) for _ in range(179)]
    gate = gate_g2(BLENDING_SLOT, 11, blending(deltas), CONFIG)
    assert gate.outcome is Outcome.FAIL and "lower bound" in gate.reason
    assert gate.measured["delta_lower"] > gate.measured["threshold"]
    assert gate.to_pb().measured["delta_upper"] > gate.to_pb().measured["delta_mean"]


def test_without_paired_losses_g2_fails_closed() -> None:
    gate = gate_g2(BLENDING_SLOT, 13, Measurements(host_loss=1.0, loss_alpha0=1.0), CONFIG)
    assert gate.outcome is Outcome.FAIL and "not measured" in gate.reason


@given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=50), st.floats(0.01, 10))
def test_g2_never_culls_a_seed_with_no_mean_effect(half: list[float], loss: float) -> None:
    deltas = half + [-d for d in half]  # mean exactly zero, any spread
    evidence = paired(deltas)
    assert evidence.lower <= 0.0 <= evidence.upper or math.isclose(evidence.mean, 0.0, abs_tol=1e-12)
    gate = gate_g2(BLENDING_SLOT, 13, blending(deltas, loss), CONFIG)
    assert gate.outcome is Outcome.PASS


def test_g1_passes_a_graft_that_lowered_the_loss_then_drifted_back() -> None:
    s = SlotState(slot=0, stage=TRAINING, seed_id=1, stage_epoch=2, training_reference_gap=0.0)
    drifted = Measurements(host_loss=1.0, seed_loss=1.001, grad_norm=1.0)
    assert gate_g1(s, 4, drifted, CONFIG).outcome is Outcome.WAIT  # the last gap alone: not improving
    gate = gate_g1(s, 4, Measurements(host_loss=1.0, seed_loss=1.001, grad_norm=1.0, best_gap=-0.1), CONFIG)
    assert gate.outcome is Outcome.PASS and gate.measured["best_gap"] == -0.1


def test_kasmina_carries_the_lowest_gap_across_boundaries() -> None:
    host = TinyCNN()
    kasmina, _, _ = to_training(host)
    seed_losses = iter([1.0, 0.9, 1.001])  # admission (gap 0), lowered, drifted back toward the host

    def boundary(epoch: int) -> list[pb.EventEnvelope]:
        seed_loss = next(seed_losses)

        def evaluate() -> Evaluation:
            loss = seed_loss if host.slot0.override == 1.0 else 1.0
            return Evaluation(loss, losses=torch.full((8,), loss))

        return kasmina.end_epoch(epoch, EpochMeasurements(1.0), evaluate)

    assert stages(boundary(2)) == ["TRAINING"]
    assert stages(boundary(3)) == []  # trained 1 of 2 epochs
    events = boundary(4)
    assert stages(events) == ["BLENDING"]
    g1 = decode_payload(events[0]).gates[0]  # type: ignore[attr-defined]
    assert g1.gate == "G1" and math.isclose(g1.measured["best_gap"], -0.1, rel_tol=1e-6)


def test_a_culled_seed_keeps_why_through_its_embargo() -> None:
    state = KasminaState.initial([0])
    for command in (
        Germinate("g", 0, 1, "BP002", "h", gate_g0(True, True)),
        Cull("c", 0, 2, "contribution -0.01"),
    ):
        state = lc.replay(state, lc.decide(state, command, CONFIG))
    assert state.slot(0).stage == pb.SEED_STAGE_EMBARGOED
    assert state.slot(0).outcome_reason == "contribution -0.01"  # the cull's reason, not the embargo's


def probed(deltas: list[float], loss_alpha0: float = 1.0) -> Measurements:
    """SHADOWING/PROBATIONARY measurements: per example, loss with the seed fully in − loss without it."""
    mean = sum(deltas) / len(deltas)
    return Measurements(loss_alpha0=loss_alpha0, loss_alpha1=loss_alpha0 + mean, seed_deltas=tuple(deltas))


def centred(mean: float, spread: float, n: int = 179, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    noise = [rng.gauss(0.0, spread) for _ in range(n)]
    return [d - sum(noise) / n + mean for d in noise]


def test_g3_passes_a_seed_whose_extra_loss_is_noise_and_culls_a_clear_one() -> None:
    noisy = gate_g3(SHADOWING_SLOT, 11, probed(centred(0.03, 0.5)), CONFIG)  # mean 3 % worse, within noise
    assert noisy.outcome is Outcome.PASS, noisy.reason
    assert noisy.measured["delta_mean"] > noisy.measured["threshold"] > noisy.measured["delta_lower"]
    clear = gate_g3(SHADOWING_SLOT, 11, probed(centred(0.1, 0.05)), CONFIG)
    assert clear.outcome is Outcome.FAIL and "lower bound" in clear.reason
    assert clear.to_pb().measured["delta_n"] == 179


def test_g4_fossilizes_only_a_contribution_the_evidence_shows_above_the_threshold() -> None:
    helping = gate_g4(PROBATION_SLOT, 12, probed(centred(-0.05, 0.1)), CONFIG)
    assert helping.outcome is Outcome.PASS, helping.reason
    assert helping.measured["contribution_lower"] > CONFIG.min_contribution
    # a small gain within noise is not yet shown: it waits for more evidence, re-measured each boundary
    unsure = probed(centred(-0.02, 1.0))
    waiting = gate_g4(PROBATION_SLOT, 12, unsure, CONFIG)
    assert waiting.measured["contribution_lower"] < 0 < waiting.measured["contribution"]
    assert waiting.outcome is Outcome.WAIT and "undecided" in waiting.reason
    deadline = PROBATION_SLOT.stage_epoch + CONFIG.probation_epochs + CONFIG.probation_extension_epochs
    assert gate_g4(PROBATION_SLOT, deadline - 1, unsure, CONFIG).outcome is Outcome.WAIT
    shown_nothing = gate_g4(PROBATION_SLOT, deadline, unsure, CONFIG)
    assert shown_nothing.outcome is Outcome.FAIL
    assert shown_nothing.reason.startswith("no contribution shown (lower bound -0.1067 <= 0")
    assert "n=179" in shown_nothing.reason and shown_nothing.measured["deadline_epochs"] == 4
    # a clear loss fails at once, without the extension: the whole bound is below the threshold
    hurting = gate_g4(PROBATION_SLOT, 12, probed(centred(0.05, 0.1)), CONFIG)
    assert hurting.outcome is Outcome.FAIL and hurting.measured["contribution_upper"] < 0
    assert hurting.measured["threshold"] == CONFIG.min_contribution and "upper bound" in hurting.reason


def test_g4_fossilizes_a_seed_whose_lower_bound_is_above_zero_by_a_hair() -> None:
    """The rejected attempt (a positive min_contribution) culled a digits seed significantly positive by a
    hair; under the default threshold such a seed is fossilized at the end of probation."""
    noise = centred(0.0, 1.0)
    margin = CONFIDENCE_Z * paired(noise).std_error * 1.0001
    gate = gate_g4(PROBATION_SLOT, 12, probed([d - margin for d in noise]), CONFIG)
    assert 0 < gate.measured["contribution_lower"] < 1e-3
    assert gate.outcome is Outcome.PASS, gate.reason


def test_g3_and_g4_fail_closed_without_paired_losses() -> None:
    bare = Measurements(loss_alpha0=1.0, loss_alpha1=0.5)
    assert gate_g3(SHADOWING_SLOT, 11, bare, CONFIG).outcome is Outcome.FAIL
    assert "not measured" in gate_g4(PROBATION_SLOT, 12, bare, CONFIG).reason


@given(st.lists(st.integers(-500, 500).map(lambda i: i / 100), min_size=1, max_size=50))
def test_g3_passes_and_g4_never_fossilizes_a_seed_with_no_mean_effect(half: list[float]) -> None:
    deltas = probed(half + [-d for d in half])
    assert gate_g3(SHADOWING_SLOT, 11, deltas, CONFIG).outcome is Outcome.PASS
    deadline = PROBATION_SLOT.stage_epoch + CONFIG.probation_epochs + CONFIG.probation_extension_epochs
    for epoch in range(12, deadline):
        assert gate_g4(PROBATION_SLOT, epoch, deltas, CONFIG).outcome is Outcome.WAIT
    culled = gate_g4(PROBATION_SLOT, deadline, deltas, CONFIG)
    assert culled.outcome is Outcome.FAIL and culled.reason.startswith("no contribution shown")


@given(
    st.lists(st.integers(-500, 500).map(lambda i: i / 100), min_size=2, max_size=50),
    st.integers(12, 20),
)
def test_g4_fossilizes_exactly_the_seeds_whose_lower_bound_is_above_the_threshold(
    contributions: list[float], epoch: int
) -> None:
    gate = gate_g4(PROBATION_SLOT, epoch, probed([-c for c in contributions]), CONFIG)
    if paired(contributions).lower > CONFIG.min_contribution:
        assert gate.outcome is Outcome.PASS, gate.reason
    else:
        assert gate.outcome is not Outcome.PASS, gate.reason


def test_the_runs_last_boundary_ends_g4s_extension_so_an_undecided_seed_is_judged() -> None:
    """A seed still undecided when the run ends is culled for showing no contribution, not torn down
    unjudged; one boundary earlier it waits, and a seed shown to help passes either way."""
    state = KasminaState.initial([0]).with_slot(PROBATION_SLOT, last_seed_id=1)
    unsure = {0: probed(centred(-0.02, 1.0))}
    assert lc.decide(state, Tick(13, unsure), CONFIG) == []
    [culled, *_] = lc.decide(state, Tick(13, unsure, final=True), CONFIG)
    assert isinstance(culled, pb.SeedTransitioned) and culled.to_stage == pb.SEED_STAGE_CULLED
    assert culled.reason.startswith("G4 failed: no contribution shown (lower bound")
    assert "after 3 epochs" in culled.reason
    [passed] = lc.decide(state, Tick(13, {0: probed(centred(-0.05, 0.1))}, final=True), CONFIG)
    assert isinstance(passed, pb.SeedTransitioned) and passed.to_stage == pb.SEED_STAGE_FOSSILIZED
