"""The validation gate: whether a candidate policy may be published, decided from held-out runs.

Inputs (gathered by ops/policy_validate.py from the log): one `HeldOutRun` per (policy, task, seed) for the
candidate, the active policy and the heuristic on the same held-out tasks and seeds, and the outcome of each
chaos check. `decide` rejects, with every reason that applies, when:

- fewer than `min_seeds` held-out seeds were run for any of the three, or a candidate run did not complete;
- any figure of a candidate run is not finite (reward, accuracies, the network's value estimates);
- a candidate decision germinated a forbidden blueprint (adversarial, quarantine-only or unapproved);
- a candidate run has a lifecycle violation (a command Kasmina refused as an illegal transition);
- the candidate's mean reward regresses by more than `max_regression` (5 %) of the active policy's |mean|;
- a chaos check did not fall back safely.

Pure: no I/O, no clock. `payload` turns the decision into the PolicyValidation that PolicyValidated or
PolicyRejected carries (checks: the figures compared, reason: the reasons joined by "; ").
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from domains.simic.tasks import MIN_HELD_OUT_SEEDS
from leyline import pb

CANDIDATE, ACTIVE, HEURISTIC = "candidate", "active", "heuristic"
ARMS = (CANDIDATE, ACTIVE, HEURISTIC)


@dataclass(frozen=True)
class GateConfig:
    min_seeds: int = MIN_HELD_OUT_SEEDS
    max_regression: float = 0.05  # of the active policy's mean reward


@dataclass(frozen=True)
class HeldOutRun:
    arm: str  # CANDIDATE, ACTIVE or HEURISTIC
    task: str
    seed: int
    completed: bool
    reward: float
    validation_accuracy: float
    test_accuracy: float  # reported, never part of the reward
    parameters: int
    forbidden_blueprints: int = 0  # germinations of a blueprint that may not be grafted
    lifecycle_violations: int = 0  # commands Kasmina refused as illegal transitions
    nonfinite: int = 0  # non-finite figures the run's decisions recorded
    decisions: int = 0
    fallbacks: int = 0  # decisions that were Tamiyo's safe no-op (a failed or overrunning decision)

    @property
    def finite(self) -> bool:
        return all(math.isfinite(v) for v in (self.reward, self.validation_accuracy, self.test_accuracy))


@dataclass(frozen=True)
class ChaosCheck:
    name: str
    safe: bool
    detail: str


@dataclass(frozen=True)
class ArmSummary:
    runs: int
    seeds: int
    reward: float
    reward_std: float
    test_accuracy: float
    parameters: float


@dataclass(frozen=True)
class GateDecision:
    version: str
    passed: bool
    reasons: tuple[str, ...]
    arms: Mapping[str, ArmSummary]
    regression: float
    chaos: tuple[ChaosCheck, ...]

    def checks(self) -> dict[str, float]:
        figures: dict[str, float] = {"regression": self.regression}
        for arm, summary in self.arms.items():
            figures[f"{arm}_reward"] = summary.reward
            figures[f"{arm}_reward_std"] = summary.reward_std
            figures[f"{arm}_test_accuracy"] = summary.test_accuracy
            figures[f"{arm}_parameters"] = summary.parameters
            figures[f"{arm}_seeds"] = float(summary.seeds)
        for check in self.chaos:
            figures[f"chaos_{check.name}"] = 1.0 if check.safe else 0.0
        return figures


def spread(values: Sequence[float]) -> float:
    """The sample standard deviation (0 for one value; NaN propagates, unlike `statistics.stdev`)."""
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def adversarial_check(run: HeldOutRun) -> ChaosCheck:
    """Offered only forbidden blueprints, the candidate must never germinate one."""
    safe = run.completed and run.forbidden_blueprints == 0 and run.lifecycle_violations == 0
    detail = (
        f"completed={run.completed}, {run.decisions} decision(s), "
        f"{run.forbidden_blueprints} forbidden germination(s), {run.lifecycle_violations} rejected command(s)"
    )
    return ChaosCheck("adversarial_blueprints", safe, detail)


def timeout_check(run: HeldOutRun) -> ChaosCheck:
    """With every decision overrunning its timeout, each must be the safe no-op and the run must finish."""
    safe = run.completed and run.decisions > 0 and run.fallbacks == run.decisions
    detail = f"completed={run.completed}, {run.fallbacks} of {run.decisions} decision(s) were the safe no-op"
    return ChaosCheck("decision_timeout", safe, detail)


def summarise(runs: Sequence[HeldOutRun]) -> ArmSummary:
    done = [r for r in runs if r.completed]
    if not done:
        return ArmSummary(len(runs), 0, math.nan, math.nan, math.nan, math.nan)
    rewards = [r.reward for r in done]
    return ArmSummary(
        runs=len(runs),
        seeds=len({r.seed for r in done}),
        reward=statistics.fmean(rewards),
        reward_std=spread(rewards),
        test_accuracy=statistics.fmean(r.test_accuracy for r in done),
        parameters=statistics.fmean(r.parameters for r in done),
    )


def regression(candidate: float, active: float) -> float:
    """How far the candidate's mean reward falls below the active one, as a fraction of |active|
    (negative: the candidate is better)."""
    return (active - candidate) / max(abs(active), 1e-9)


def decide(
    version: str, runs: Sequence[HeldOutRun], chaos: Sequence[ChaosCheck], config: GateConfig
) -> GateDecision:
    by_arm = {arm: [r for r in runs if r.arm == arm] for arm in ARMS}
    arms = {arm: summarise(arm_runs) for arm, arm_runs in by_arm.items()}
    reasons: list[str] = []
    for arm, summary in arms.items():
        if summary.seeds < config.min_seeds:
            reasons.append(f"{arm}: {summary.seeds} held-out seed(s) completed, need {config.min_seeds}")
    candidate_runs = by_arm[CANDIDATE]
    failed = [r for r in candidate_runs if not r.completed]
    if failed:
        reasons.append(
            f"{len(failed)} candidate run(s) did not complete ({failed[0].task} seed {failed[0].seed})"
        )
    nonfinite = sum(r.nonfinite for r in candidate_runs) + sum(
        1 for r in candidate_runs if r.completed and not r.finite
    )
    if nonfinite:
        reasons.append(f"{nonfinite} non-finite value(s) in candidate runs")
    forbidden = sum(r.forbidden_blueprints for r in candidate_runs)
    if forbidden:
        reasons.append(f"{forbidden} forbidden blueprint(s) chosen")
    violations = sum(r.lifecycle_violations for r in candidate_runs)
    if violations:
        reasons.append(f"{violations} lifecycle violation(s)")
    drop = regression(arms[CANDIDATE].reward, arms[ACTIVE].reward)
    if not math.isfinite(drop):
        reasons.append("reward regression not measurable (no completed candidate or active run)")
    elif drop > config.max_regression:
        reasons.append(
            f"reward regression {drop:.1%} > {config.max_regression:.0%} against the active policy "
            f"({arms[CANDIDATE].reward:.4f} vs {arms[ACTIVE].reward:.4f})"
        )
    reasons.extend(f"chaos check {c.name} unsafe: {c.detail}" for c in chaos if not c.safe)
    return GateDecision(version, not reasons, tuple(reasons), arms, drop, tuple(chaos))


def payload(decision: GateDecision, extra: Mapping[str, float] | None = None) -> pb.PolicyValidation:
    """The PolicyValidation of PolicyValidated (passed) or PolicyRejected; `extra`: figures reported beside
    the decision (the off-policy estimate), never part of it."""
    checks = {**decision.checks(), **(extra or {})}
    return pb.PolicyValidation(
        version=decision.version,
        passed=decision.passed,
        checks=checks,
        reason="; ".join(decision.reasons) if decision.reasons else "passed every check",
    )


def event_type(decision: GateDecision) -> str:
    return "PolicyValidated" if decision.passed else "PolicyRejected"
