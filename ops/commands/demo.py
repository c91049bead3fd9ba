"""`esper demo learning`: Simic end to end in one data directory (ops/demo_learning.py)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from ops.common import add_command, print_json
from ops.errors import CommandError, UsageError

DEMOS = ("learning",)
DESCRIPTION = """\
esper demo learning [--budget small|default] [--out DIR]

The controller learns from the log, end to end: an untrained policy is published; training rounds run
pairs of short episodes (the ε-heuristic, ε 0.2, and the current policy) on the bundled training tasks
and update the policy with PPO; the validation gate compares the result with the untrained policy and
the heuristic on held-out tasks (5 seeds, chaos checks, an off-policy estimate) and publishes it as
demo-v1; a live run started on the untrained policy hot-reloads demo-v1 at an epoch boundary. Writes
learning-report.md and learning-curve.png under --out (default <data-dir>/demo-learning).

--budget small (2 rounds × 4 episodes of 4 epochs) takes a few minutes on 2 cores; default is 4 × 6 of 6;
tiny (1 × 2 of 3) is a smoke check (the tests' budget).
Running it again on the same data directory resumes from the log. Exit 1 when the gate rejects the
candidate or the live run does not take it (the report says why).
"""


def register(subparsers: Any) -> None:
    parser = add_command(subparsers, "demo", handle, "end-to-end demonstrations (learning)", DESCRIPTION)
    parser.add_argument("name", metavar="NAME", choices=DEMOS, help="the demo: learning")
    parser.add_argument(
        "--budget", choices=("tiny", "small", "default"), default="default", help="training budget"
    )
    parser.add_argument("--out", type=Path, default=None, metavar="DIR", help="report directory")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the policy, the runs and the updates")


def _finite(value: Any) -> Any:
    """The document with every non-finite number as null (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def handle(args: argparse.Namespace) -> int:
    from leyline.datadir import DataDir
    from ops.demo_learning import BUDGETS, run_demo
    from ops.demo_report import write_report

    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    if args.seed < 0:
        raise UsageError(f"--seed must be non-negative, got {args.seed}")
    data_dir = DataDir(args.data_dir)
    result = run_demo(data_dir, BUDGETS[args.budget], args.workers, args.seed, args.json)
    report, png = write_report(result, args.out or data_dir.root / "demo-learning")
    decision, live = result.validation.decision, result.live
    document = {
        "passed": decision.passed,
        "reasons": list(decision.reasons),
        "release": result.validation.release,
        "rounds": [
            {
                "round": f.round,
                "version": f.version,
                "gnn_reward": f.gnn_reward,
                "heuristic_reward": f.heuristic_reward,
            }
            for f in result.rounds
        ],
        "held_out": {
            arm: {"reward": s.reward, "reward_std": s.reward_std, "test_accuracy": s.test_accuracy}
            for arm, s in decision.arms.items()
        },
        "live": None
        if live is None
        else {
            "run_id": live.run_id,
            "activated_epoch": live.activated_epoch,
            "versions_after": sorted(live.versions_after()),
        },
        "report": str(report),
        "curve": str(png),
        "wall_s": result.wall_s,
    }
    if args.json:
        print_json(
            {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in document.items()}
        )
    else:
        print(f"report: {report}\ncurve:  {png}")
    if not decision.passed:
        raise CommandError(
            f"the gate rejected {decision.version}: {'; '.join(decision.reasons)} (see {report})"
        )
    if live is None or live.versions_after() != {live.release}:
        raise CommandError(f"the live run did not hot-reload {result.validation.release} (see {report})")
    return 0
