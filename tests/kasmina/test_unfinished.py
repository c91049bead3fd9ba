"""A seed the run's end tears down says why it was unfinished: its stage, and the fewest epochs still
needed for a verdict."""

from __future__ import annotations

from domains.kasmina.state import SlotState
from domains.kasmina.unfinished import epochs_to_verdict, teardown_reason
from leyline.lifecycle import (
    BLENDING,
    EMBARGOED,
    GERMINATED,
    PROBATIONARY,
    SHADOWING,
    TRAINING,
    LifecycleConfig,
)

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
