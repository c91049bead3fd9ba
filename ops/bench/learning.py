"""`esper bench learning`: does Simic learn, measured on held-out tasks.

Held-out figures (one training per bench, on a scratch data directory: `esper policy train --clone
EPISODES` (the warm start: the start policy cloned on EPISODES ε-heuristic episodes' decisions,
domains/simic/clone.py), then ROUNDS × EPISODES GNN episodes of the bundled task distribution's epochs,
seed 0; --quick: 1 round × 2 episodes of 3 epochs), then the validation gate's held-out runs (every
held-out task × 5 seeds; the learned policy, the untrained one it started from, and the heuristic on the
same tasks and seeds; the learned policies act greedily there, `HeuristicConfig.greedy`):

- learned_reward, heuristic_reward: mean run reward (`domains/simic/reward.run_return`) over the
  held-out runs; reward_spread: the larger of the two arms' standard deviations over seeds. Target: the
  learned policy beats the heuristic by more than the spread;
- learned_test_acc ≥ heuristic_test_acc at learned_params ≤ heuristic_params (means over the same runs);
- PPO health at the last update (its PolicyTrained): explained_variance ≥ 0.3, min_head_entropy (the
  smallest per-head entropy of the heads that acted) ≥ ENTROPY_FLOOR, approx_kl;
- train_wall_s: the training's wall time (episodes and updates), target ≤ 30 minutes;
- gate_passed: whether the validation gate passed the learned policy (1/0).

CartPole, the PPO correctness check (domains/simic/cartpole.py):
- cartpole_steps_to_475: environment steps until the greedy CartPole-v1 policy returns ≥ 475 on three
  episodes, median over seeds 0–4 (0–2 with --quick), with the same PPO code; an unsolved seed counts as
  its step budget. Target ≤ 30000. cartpole_solved_seeds, cartpole_wall_s (median per seed).
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from pathlib import Path

from ops.bench import BenchOptions, Result

DESCRIPTION = (
    "Simic: the learned policy against the heuristic on held-out tasks (reward, test accuracy, parameters, "
    "PPO health, training time) and PPO correctness on CartPole-v1"
)
SEEDS = 5
QUICK_SEEDS = 3
TARGET_STEPS = 30_000
TARGET_EXPLAINED_VARIANCE = 0.3
ENTROPY_FLOOR = 0.1  # nats: a head below it has collapsed onto one choice
TARGET_TRAIN_S = 30 * 60
NAME = "bench"
# 10 rounds x 6 episodes of 16 epochs: with policy train's default 3 x 4 the updates barely moved the
# policy (approx KL 0.002-0.004; two trainings under different rewards gave the same held-out figures);
# 10 x 6 trains in 381-1,622 s on this 2-core machine (load 4-20), inside the 30-minute target. The
# figures of each configuration tried are in the closing notes of issue 16.
ROUNDS, EPISODES = 10, 6


def cartpole(options: BenchOptions) -> list[Result]:
    from domains.simic.cartpole import CartPoleConfig, steps_to_solve

    config = CartPoleConfig(max_steps=TARGET_STEPS)
    seeds = QUICK_SEEDS if options.quick else SEEDS
    steps, walls = [], []
    for seed in range(seeds):
        began = time.perf_counter()
        solved = steps_to_solve(seed, config)
        walls.append(time.perf_counter() - began)
        steps.append(solved)
        options.progress(f"cartpole seed {seed}: {solved if solved is not None else 'not solved'}")
    counted = [s if s is not None else config.max_steps for s in steps]
    solved_count = sum(s is not None for s in steps)
    median = statistics.median(counted)
    return [
        Result(
            "cartpole_steps_to_475",
            median,
            "steps",
            target=f"<= {TARGET_STEPS}",
            met=median <= TARGET_STEPS and solved_count * 5 >= seeds * 4,
            note=f"median over {seeds} seeds; an unsolved seed counts as {config.max_steps}",
        ),
        Result("cartpole_solved_seeds", solved_count, "seeds", target=f">= 4 of 5 ({seeds} run)"),
        Result("cartpole_wall_s", statistics.median(walls), "s", note="median per seed, one thread"),
    ]


def held_out(options: BenchOptions) -> list[Result]:
    from domains.simic.gate import CANDIDATE, HEURISTIC
    from eventstore import open_store
    from leyline.datadir import DataDir
    from ops.demo_learning import INITIAL, initial_policy, trained_metrics
    from ops.policy_train import EXPLORE_DEFAULT, TrainOptions, train
    from ops.policy_validate import load_tasks, validate

    rounds, episodes = (1, 2) if options.quick else (ROUNDS, EPISODES)
    tasks = load_tasks(None)
    if options.quick:
        tasks = tasks.with_epochs(3)
    with tempfile.TemporaryDirectory(prefix="esper-bench-learning-") as scratch:
        data_dir = DataDir(Path(scratch))
        data_dir.create()
        store = open_store(data_dir.log)
        try:
            initial_policy(store, data_dir, 0)
            train_options = TrainOptions(
                NAME, INITIAL, rounds, episodes, 0, "gnn", EXPLORE_DEFAULT, 2, True, clone_episodes=episodes
            )
            options.progress(
                f"training: warm start on {episodes} heuristic episode(s), then {rounds} round(s) × "
                f"{episodes} episode(s) of {tasks.train.epochs} epochs"
            )
            began = time.perf_counter()
            learned, _ = train(store, data_dir, tasks, train_options)
            train_wall = time.perf_counter() - began
            options.progress("held-out runs: learned, untrained and heuristic, 5 seeds each")
            validation = validate(store, data_dir, learned, INITIAL, tasks, name=NAME, workers=2, quiet=True)
            health = trained_metrics(store, NAME)[learned]
        finally:
            store.close()
    arms = validation.decision.arms
    mine, theirs = arms[CANDIDATE], arms[HEURISTIC]
    spread = max(mine.reward_std, theirs.reward_std)
    entropies = [v for k, v in health.items() if k.startswith("entropy_") and math.isfinite(v)]
    min_entropy = min(entropies) if entropies else math.nan
    seeds = f"mean over {mine.seeds} held-out seed(s) × {len(tasks.held_out.tasks)} task(s)"

    def per_seed(arm: str) -> str:
        runs = [r for r in validation.runs if r.arm == arm]
        return ", ".join(f"s{r.seed} {r.reward:.3f}/{r.test_accuracy:.3f}/{r.parameters}" for r in runs)

    breakdown = (
        f"per run (reward/test accuracy/parameters): learned {per_seed(CANDIDATE)}; "
        f"heuristic {per_seed(HEURISTIC)}"
    )
    return [
        Result(
            "learned_reward",
            mine.reward,
            "reward",
            baseline_name="heuristic_reward",
            baseline=theirs.reward,
            ratio=mine.reward / theirs.reward if theirs.reward else None,
            target="> heuristic_reward + reward_spread",
            met=mine.reward - theirs.reward > spread,
            note=seeds,
        ),
        Result("heuristic_reward", theirs.reward, "reward", note=seeds),
        Result(
            "reward_spread",
            spread,
            "reward",
            note=f"the larger standard deviation over seeds of the two; {breakdown}",
        ),
        Result(
            "learned_test_acc",
            mine.test_accuracy,
            "fraction",
            baseline_name="heuristic_test_acc",
            baseline=theirs.test_accuracy,
            target=">= heuristic_test_acc",
            met=mine.test_accuracy >= theirs.test_accuracy,
        ),
        Result("heuristic_test_acc", theirs.test_accuracy, "fraction"),
        Result(
            "learned_params",
            mine.parameters,
            "parameters",
            baseline_name="heuristic_params",
            baseline=theirs.parameters,
            target="<= heuristic_params",
            met=mine.parameters <= theirs.parameters,
        ),
        Result("heuristic_params", theirs.parameters, "parameters"),
        Result(
            "explained_variance",
            health.get("explained_variance", math.nan),
            "",
            target=f">= {TARGET_EXPLAINED_VARIANCE}",
            met=health.get("explained_variance", math.nan) >= TARGET_EXPLAINED_VARIANCE,
            note="at the last PPO update",
        ),
        Result(
            "min_head_entropy",
            min_entropy,
            "nats",
            target=f">= {ENTROPY_FLOOR}",
            met=min_entropy >= ENTROPY_FLOOR,
            note="smallest entropy of the heads that acted, last update",
        ),
        Result("approx_kl", health.get("approx_kl", math.nan), "", note="at the last PPO update"),
        Result(
            "train_wall_s",
            train_wall,
            "s",
            target=f"<= {TARGET_TRAIN_S}",
            met=train_wall <= TARGET_TRAIN_S,
            note=f"{rounds} round(s) × {episodes} episode(s), 2 worker processes",
        ),
        Result(
            "gate_passed",
            1.0 if validation.decision.passed else 0.0,
            "",
            note="; ".join(validation.decision.reasons) or "passed every check",
        ),
    ]


def run(options: BenchOptions) -> list[Result]:
    import torch

    torch.set_num_threads(1)
    return [*held_out(options), *cartpole(options)]
