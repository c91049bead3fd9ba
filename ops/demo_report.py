"""The report of `esper demo learning`: markdown with the before/after figures and a PNG learning curve
(matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

from domains.simic.gate import ACTIVE, CANDIDATE, HEURISTIC
from ops.demo_learning import INITIAL, DemoResult

ARM_NAMES = {HEURISTIC: "heuristic", ACTIVE: f"before ({INITIAL})", CANDIDATE: "after (candidate)"}


def _f(value: float, digits: int = 4) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"


def _epoch(epoch: int | None) -> str:
    return "- (never activated)" if epoch is None else str(epoch)


def draw_curve(result: DemoResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    rounds = [f.round for f in result.rounds]
    figure, axis = pyplot.subplots(figsize=(7, 4.2))
    axis.plot(rounds, [f.gnn_reward for f in result.rounds], "o-", label="GNN policy, training episodes")
    axis.plot(rounds, [f.heuristic_reward for f in result.rounds], "s--", label="ε-heuristic, same tasks")
    colours = {HEURISTIC: "grey", ACTIVE: "tab:red", CANDIDATE: "tab:green"}
    for arm, summary in result.validation.decision.arms.items():
        if math.isfinite(summary.reward):
            axis.axhline(
                summary.reward, color=colours[arm], linestyle=":", label=f"held-out: {ARM_NAMES[arm]}"
            )
    axis.set_xlabel("training round")
    axis.set_ylabel("mean run reward")
    axis.set_xticks(rounds)
    axis.margins(y=0.15)
    axis.set_title("Simic demo: training episodes (tasks change by round) and held-out means", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def markdown(result: DemoResult, png_name: str) -> str:
    validation, budget = result.validation, result.budget
    decision = validation.decision
    lines = [
        "# Esper learning demo",
        "",
        f"Budget: {budget.rounds} round(s) × {budget.episodes} episode(s) of {budget.epochs} epochs "
        f"(half ε-heuristic, half GNN, paired by task and seed); held-out runs of {budget.epochs} epochs; "
        f"a live run of {budget.live_epochs} epochs. Wall time of this invocation {result.wall_s:.0f} s"
        " (a resumed demo reads what the log already holds).",
        "",
        "## Training rounds",
        "",
        "| round | version | GNN reward | ε-heuristic reward | explained variance | approx KL "
        "| min head entropy |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in result.rounds:
        entropies = [v for k, v in f.metrics.items() if k.startswith("entropy_") and math.isfinite(v)]
        variance, kl = f.metrics.get("explained_variance", math.nan), f.metrics.get("approx_kl", math.nan)
        lines.append(
            f"| {f.round} | {f.version} | {_f(f.gnn_reward)} | {_f(f.heuristic_reward)} | {_f(variance, 3)} "
            f"| {_f(kl)} | {_f(min(entropies) if entropies else math.nan, 3)} |"
        )
    lines += [
        "",
        f"![learning curve]({png_name})",
        "",
        f"## Held-out tasks: before and after ({decision.version})",
        "",
        "| policy | reward (mean ± sd) | seeds | test accuracy | parameters |",
        "|---|---|---|---|---|",
    ]
    for arm in (HEURISTIC, ACTIVE, CANDIDATE):
        s = decision.arms[arm]
        lines.append(
            f"| {ARM_NAMES[arm]} | {_f(s.reward)} ± {_f(s.reward_std)} | {s.seeds} | "
            f"{_f(s.test_accuracy)} | {_f(s.parameters, 0)} |"
        )
    ope = validation.estimate
    lines += [
        "",
        "## Validation gate",
        "",
        f"- decision: **{'passed' if decision.passed else 'rejected'}**"
        + (
            f", published as `{validation.release}`"
            if decision.passed
            else ": " + "; ".join(decision.reasons)
        ),
        f"- reward regression against the active policy: {decision.regression:+.1%} (limit +5 %)",
    ]
    lines += [f"- chaos `{c.name}`: {'safe' if c.safe else 'UNSAFE'} ({c.detail})" for c in decision.chaos]
    lines += [
        f"- off-policy estimate of the candidate from {ope.episodes} logged training episode(s) whose"
        " decisions record observation and propensity (reported, not deciding; 90 % bootstrap intervals):"
        f" SNIPS {_f(ope.snips)} [{_f(ope.low)}, {_f(ope.high)}], doubly robust {_f(ope.dr)}"
        f" [{_f(ope.dr_low)}, {_f(ope.dr_high)}] (reward model fitted on the logged decisions),"
        f" effective sample size {ope.ess:.1f}; the logged behaviour's mean {_f(ope.behaviour_mean)}",
        "",
        "## Live hot reload",
        "",
    ]
    live = result.live
    if live is None:
        lines.append("Not run: the candidate did not pass the gate.")
    else:
        before = sorted(
            {v for e, v in live.decisions if live.activated_epoch is None or e < live.activated_epoch}
        )
        lines += [
            f"- run `{live.run_id}` started on `{INITIAL}`; {live.reason or 'no activation recorded'}",
            f"- activated at the boundary of epoch: {_epoch(live.activated_epoch)}",
            f"- versions named by decisions before: {', '.join(before) or '-'}; after: "
            f"{', '.join(sorted(live.versions_after())) or '-'}",
        ]
    lines += [
        "",
        "Rewards: `domains/simic/reward.py` (`run_return`: final validation accuracy − parameter rent per"
        " doubling × log2(final / host parameters) − cull and rollback penalties; test accuracy is reported,"
        " never rewarded).",
        "",
    ]
    return "\n".join(lines)


def write_report(result: DemoResult, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    report, png = out / "learning-report.md", out / "learning-curve.png"
    draw_curve(result, png)
    report.write_text(markdown(result, png.name), encoding="utf-8")
    return report, png
