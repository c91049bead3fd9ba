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


def epochs_from_germination(config: LifecycleConfig, alpha_ramp_epochs: int = 0) -> int:
    """The fewest epochs from the boundary that germinates a seed to its verdict (G4 at the end of
    probation), with the seed's own ramp (0: the lifecycle's)."""
    ramp = alpha_ramp_epochs or config.alpha_ramp_epochs
    return 1 + config.min_training_epochs + ramp + 1 + config.probation_epochs


def too_late_reason(
    epoch: int, run_epochs: int, config: LifecycleConfig, alpha_ramp_epochs: int
) -> str | None:
    """Why a germination at `epoch` is refused in a run of `run_epochs`, or None: a seed that cannot reach
    its verdict before the run's last epoch is torn down unfinished, after its blending has already moved
    the host (measured on Fashion-MNIST, 12 epochs: every late seed TERMINATED, the host worse for it)."""
    needed = epochs_from_germination(config, alpha_ramp_epochs)
    if epoch + needed <= run_epochs:
        return None
    return (
        f"a seed germinated at epoch {epoch} needs at least {needed} epoch(s) to its verdict (ramp "
        f"{alpha_ramp_epochs or config.alpha_ramp_epochs}); the run ends at epoch {run_epochs}"
    )


def teardown_reason(s: SlotState, epoch: int, config: LifecycleConfig) -> str:
    """The TERMINATED reason at the run's end; the cause comes before the colon."""
    if s.stage in (EMBARGOED, RESETTING):
        return f"run ended during the slot's quarantine after a cull: {stage_name(s.stage)} at epoch {epoch}"
    return (
        f"run ended with the seed unfinished: {stage_name(s.stage)} for {epoch - s.stage_epoch} epoch(s), "
        f"germinated at epoch {s.germinated_epoch}, the run's last epoch {epoch}; the lifecycle needed at "
        f"least {epochs_to_verdict(s, epoch, config)} more epoch(s) to judge it (raise --epochs)"
    )
