"""Why a seed the run's end tears down did not finish (pure): its stage, how long it had been there, and
the fewest epochs the lifecycle still needed before a verdict (G4 at the end of probation).

A lower bound: each remaining stage lasted its minimum (GERMINATED one boundary, TRAINING
`min_training_epochs`, BLENDING the seed's own ramp, SHADOWING one, PROBATIONARY `probation_epochs`).
"""

from __future__ import annotations

from domains.kasmina.state import SlotState
from leyline.lifecycle import (
    BLENDING,
    EMBARGOED,
    GERMINATED,
    PROBATIONARY,
    RESETTING,
    SHADOWING,
    TRAINING,
    LifecycleConfig,
    stage_name,
)

ORDER = (GERMINATED, TRAINING, BLENDING, SHADOWING, PROBATIONARY)


def epochs_to_verdict(s: SlotState, epoch: int, config: LifecycleConfig) -> int:
    minimum: dict[int, int] = {
        GERMINATED: 1,
        TRAINING: config.min_training_epochs,
        BLENDING: s.alpha_ramp_epochs or config.alpha_ramp_epochs,
        SHADOWING: 1,
        PROBATIONARY: config.probation_epochs,
    }
    if s.stage not in minimum:
        return 0
    here = max(0, minimum[s.stage] - (epoch - s.stage_epoch))
    return here + sum(minimum[stage] for stage in ORDER[ORDER.index(s.stage) + 1 :])


def teardown_reason(s: SlotState, epoch: int, config: LifecycleConfig) -> str:
    """The TERMINATED reason at the run's end; the cause comes before the colon."""
    if s.stage in (EMBARGOED, RESETTING):
        return f"run ended during the slot's quarantine after a cull: {stage_name(s.stage)} at epoch {epoch}"
    return (
        f"run ended with the seed unfinished: {stage_name(s.stage)} for {epoch - s.stage_epoch} epoch(s), "
        f"germinated at epoch {s.germinated_epoch}, the run's last epoch {epoch}; the lifecycle needed at "
        f"least {epochs_to_verdict(s, epoch, config)} more epoch(s) to judge it (raise --epochs)"
    )
