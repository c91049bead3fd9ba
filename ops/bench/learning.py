"""`esper bench learning`: what Simic can measure honestly so far.

- cartpole_steps_to_475: environment steps until the greedy CartPole-v1 policy returns ≥ 475 on three
  episodes, median over seeds 0–4 (0–2 with --quick), with the same PPO code that trains Tamiyo's policy
  (domains/simic/cartpole.py); an unsolved seed counts as its step budget. Target ≤ 30000.
- cartpole_solved_seeds, cartpole_wall_s (median per seed).

Not measured yet (no validation gate on held-out tasks exists): learned_reward, heuristic_reward,
reward_spread, learned/heuristic test accuracy and parameters, PPO health at the end of training.
"""

from __future__ import annotations

import statistics
import time

from ops.bench import BenchOptions, Result

DESCRIPTION = "Simic: PPO correctness on CartPole-v1 (steps to greedy 475, seeds solved, wall time)"
SEEDS = 5
QUICK_SEEDS = 3
TARGET_STEPS = 30_000


def run(options: BenchOptions) -> list[Result]:
    import torch

    from domains.simic.cartpole import CartPoleConfig, steps_to_solve

    torch.set_num_threads(1)
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
