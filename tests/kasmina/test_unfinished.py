"""A seed the run's end tears down says why it was unfinished: its stage, and the fewest epochs still
needed for a verdict; and a germination that could not reach its verdict before the run ends is refused."""

from __future__ import annotations

import torch

from domains.kasmina import Kasmina, KasminaConfig
from domains.kasmina.state import SlotState
from domains.kasmina.unfinished import (
    epochs_from_germination,
    epochs_to_verdict,
    teardown_reason,
    too_late_reason,
)
from leyline import decode_payload, pb
from leyline.lifecycle import (
    BLENDING,
    EMBARGOED,
    GERMINATED,
    PROBATIONARY,
    SHADOWING,
    TRAINING,
    LifecycleConfig,
)
from leyline.signing import Keyring, Verifier
from tests.kasmina.helpers import RUN, Commander, TinyCNN, source

CONFIG = LifecycleConfig(min_training_epochs=2, alpha_ramp_epochs=3, probation_epochs=2)


def seed(stage: int, stage_epoch: int, ramp: int = 0) -> SlotState:
    return SlotState(
        0, stage=stage, seed_id=1, germinated_epoch=20, stage_epoch=stage_epoch, alpha_ramp_epochs=ramp
    )


def test_epochs_to_a_verdict_count_what_each_remaining_stage_needs_at_least() -> None:
    assert epochs_to_verdict(seed(GERMINATED, 20), 20, CONFIG) == 1 + 2 + 3 + 1 + 2
    assert epochs_to_verdict(seed(TRAINING, 21), 22, CONFIG) == 1 + 3 + 1 + 2  # one training epoch done
    assert epochs_to_verdict(seed(BLENDING, 23, ramp=6), 23, CONFIG) == 6 + 1 + 2  # the seed's own ramp
    assert epochs_to_verdict(seed(SHADOWING, 26), 26, CONFIG) == 1 + 2
    assert epochs_to_verdict(seed(PROBATIONARY, 27), 29, CONFIG) == 0
    assert epochs_to_verdict(seed(EMBARGOED, 27), 29, CONFIG) == 0


def test_the_teardown_reason_names_the_stage_and_what_was_missing() -> None:
    reason = teardown_reason(seed(TRAINING, 21), 22, CONFIG)
    assert reason.startswith("run ended with the seed unfinished: TRAINING for 1 epoch(s)")
    assert "germinated at epoch 20" in reason and "at least 7 more epoch(s)" in reason
    assert teardown_reason(seed(EMBARGOED, 21), 22, CONFIG).startswith(
        "run ended during the slot's quarantine"
    )


def test_a_germination_needs_as_many_epochs_as_a_germinated_seed_still_needs() -> None:
    assert epochs_from_germination(CONFIG) == epochs_to_verdict(seed(GERMINATED, 20), 20, CONFIG) == 9
    assert epochs_from_germination(CONFIG, alpha_ramp_epochs=6) == 12  # the command's own ramp


def test_a_germination_that_cannot_reach_its_verdict_by_the_last_epoch_is_refused() -> None:
    assert too_late_reason(3, 12, CONFIG, 0) is None  # verdict at epoch 12, the run's last boundary
    reason = too_late_reason(4, 12, CONFIG, 0)
    assert reason == (
        "a seed germinated at epoch 4 needs at least 9 epoch(s) to its verdict (ramp 3); "
        "the run ends at epoch 12"
    )
    assert too_late_reason(1, 12, CONFIG, 6) is not None and too_late_reason(0, 12, CONFIG, 6) is None


def test_kasmina_refuses_a_late_germination_with_an_event_and_fetches_nothing() -> None:
    torch.manual_seed(0)
    keyring = Keyring.generate()
    config = KasminaConfig(lifecycle=CONFIG, run_epochs=12)
    kasmina = Kasmina(RUN, TinyCNN(), source(), Verifier(keyring), config)
    commander = Commander(keyring)
    refused = kasmina.execute(commander.command(pb.SEED_OP_GERMINATE), 4)
    assert [e.event_type for e in refused] == ["CommandRejected"]
    rejection = decode_payload(refused[0])
    assert isinstance(rejection, pb.CommandRejected) and rejection.code == "run_ending"
    assert "the run ends at epoch 12" in rejection.reason
    assert kasmina.slots[0].seed is None and not kasmina.effects.pending
    accepted = kasmina.execute(commander.command(pb.SEED_OP_GERMINATE), 3)
    assert [e.event_type for e in accepted] == ["SeedTransitioned", "SeedGrafted"]
