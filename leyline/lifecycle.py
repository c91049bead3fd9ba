"""The seed lifecycle's contract (SPEC §7): stages, stage sets, the transition table, gate names and the
limits every subsystem that reasons about a seed must respect.

Kasmina enforces the lifecycle (domains/kasmina), controllers plan around it (domains/tamiyo), test
workloads and read models follow it; they import these tables instead of restating them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

from leyline import pb

DORMANT = pb.SEED_STAGE_DORMANT
GERMINATED = pb.SEED_STAGE_GERMINATED
TRAINING = pb.SEED_STAGE_TRAINING
BLENDING = pb.SEED_STAGE_BLENDING
SHADOWING = pb.SEED_STAGE_SHADOWING
PROBATIONARY = pb.SEED_STAGE_PROBATIONARY
FOSSILIZED = pb.SEED_STAGE_FOSSILIZED
CULLED = pb.SEED_STAGE_CULLED
EMBARGOED = pb.SEED_STAGE_EMBARGOED
RESETTING = pb.SEED_STAGE_RESETTING
TERMINATED = pb.SEED_STAGE_TERMINATED

# Stages in which a seed exists and may be culled (SPEC §7: "any stage from GERMINATED to PROBATIONARY").
ACTIVE_STAGES = frozenset({GERMINATED, TRAINING, BLENDING, SHADOWING, PROBATIONARY})
# Stages in which no gradient from the seed path may reach host parameters (the seed input is detached).
ISOLATED_STAGES = frozenset({TRAINING, BLENDING, SHADOWING})
# Stages in which the slot calls its seed, whose parameters then learn in their own optimizer group.
RUNNING_STAGES = frozenset({TRAINING, BLENDING, SHADOWING, PROBATIONARY, FOSSILIZED})
# Stages in which the isolation monitor and the non-finite guards watch the seed (until it is merged).
GUARDED_STAGES = ISOLATED_STAGES | {PROBATIONARY}
# Stages a slot passes through after a cull before it can take a new seed.
QUARANTINE_STAGES = frozenset({CULLED, EMBARGOED, RESETTING})

TRANSITIONS: Mapping[int, frozenset[int]] = {
    DORMANT: frozenset({GERMINATED, TERMINATED}),
    GERMINATED: frozenset({TRAINING, CULLED, TERMINATED}),
    TRAINING: frozenset({BLENDING, CULLED, TERMINATED}),
    BLENDING: frozenset({SHADOWING, CULLED, TERMINATED}),
    SHADOWING: frozenset({PROBATIONARY, CULLED, TERMINATED}),
    PROBATIONARY: frozenset({FOSSILIZED, CULLED, TERMINATED}),
    FOSSILIZED: frozenset(),
    CULLED: frozenset({EMBARGOED}),
    EMBARGOED: frozenset({RESETTING, TERMINATED}),
    RESETTING: frozenset({DORMANT, TERMINATED}),
    TERMINATED: frozenset(),
}

# The path of a seed that succeeds, and the path of a slot after a cull back to DORMANT.
STAGE_PATH = (DORMANT, GERMINATED, TRAINING, BLENDING, SHADOWING, PROBATIONARY, FOSSILIZED)
CULL_PATH = (CULLED, EMBARGOED, RESETTING, DORMANT)

# Gate names as recorded in GateResult.gate.
G0, G1, G2, G3, G4, G5 = "G0", "G1", "G2", "G3", "G4", "G5"
ADMISSION_GATE = "admission"  # the slot scheduler admitting a germinated seed into TRAINING
ISOLATION_GATE = "isolation"  # the isolation monitor culling a seed that leaked gradients
# The gate evaluated at each epoch boundary while a seed is in a stage, and where its pass leads.
STAGE_GATE_NAMES: Mapping[int, str] = {TRAINING: G1, BLENDING: G2, SHADOWING: G3, PROBATIONARY: G4}
NEXT_STAGE: Mapping[int, int] = {
    TRAINING: BLENDING,
    BLENDING: SHADOWING,
    SHADOWING: PROBATIONARY,
    PROBATIONARY: FOSSILIZED,
}
# The gate whose pass moves a slot into a stage (G0 germinates, G5 returns a scrubbed slot to DORMANT).
GATE_INTO: Mapping[int, str] = {
    GERMINATED: G0,
    **{NEXT_STAGE[stage]: gate for stage, gate in STAGE_GATE_NAMES.items()},
    DORMANT: G5,
}


def stage_name(stage: int) -> str:
    return pb.SeedLifecycleStage.Name(stage).removeprefix("SEED_STAGE_")


@dataclass(frozen=True)
class LifecycleConfig:
    """Lifecycle defaults of SPEC §7 and the gate thresholds (all configurable)."""

    min_training_epochs: int = 2
    max_training_epochs: int = 8  # G1 fails if the seed loss has not improved by then
    alpha_ramp_epochs: int = 3
    probation_epochs: int = 2
    embargo_epochs: int = 3
    max_training_seeds: int = 1
    max_isolation_violations: int = 3  # violations that cull a seed
    max_grad_norm: float = 1e3  # G1: RMS seed gradient norm per step
    host_loss_tolerance: float = 0.05  # G2: host loss may grow by at most 5 % while blending
    shadow_tolerance: float = 0.02  # G3: culls when the 95 % lower bound of the loss rise with the seed > 2 %
    # G4: passes when the 95 % lower bound of the per-example loss(alpha 0) - loss(alpha 1) is above this
    # (the seed is shown to help), culls at once when the upper bound is below it (shown to hurt)
    min_contribution: float = 0.0
    # G4: boundaries after probation_epochs that a seed whose contribution is still within noise of
    # min_contribution may wait for more evidence (re-measured at each) before it is culled for showing none;
    # the run's last boundary ends the extension
    probation_extension_epochs: int = 2

    def __post_init__(self) -> None:
        for name in ("min_training_epochs", "alpha_ramp_epochs", "max_training_seeds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_training_epochs < self.min_training_epochs:
            raise ValueError("max_training_epochs must be >= min_training_epochs")
        windows = (self.embargo_epochs, self.probation_epochs, self.probation_extension_epochs)
        if min(windows) < 0 or self.max_isolation_violations < 1:
            raise ValueError(
                "embargo_epochs, probation_epochs and probation_extension_epochs must be >= 0, "
                "max_isolation_violations >= 1"
            )

    @property
    def probation_deadline_epochs(self) -> int:
        """Epochs in PROBATIONARY after which G4 judges a seed whose evidence is still undecided."""
        return self.probation_epochs + self.probation_extension_epochs

    def to_pb(self) -> pb.LifecycleConfig:
        """The message RunStarted records, so a resumed run restores the limits it started with."""
        return pb.LifecycleConfig(**asdict(self))

    @classmethod
    def from_pb(cls, message: pb.LifecycleConfig) -> LifecycleConfig:
        """The config a LifecycleConfig message records (every field is written by `to_pb`)."""
        return cls(**{f.name: getattr(message, f.name) for f in fields(cls)})
