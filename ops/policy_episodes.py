"""Simic's episodes: real runs in worker processes on one log, with a progress bar on stderr.

A `Job` is one run: its RunConfig keys (`domains.simic.tasks.Episode.run_config`), the heuristic's ε
(`exploration_epsilon`) and whether a learned policy acts greedily (`greedy`: held-out runs; both recorded
in RunStarted as the controller's configuration) and an optional chaos
check that the composition root applies to the controller before the run starts:

- `adversarial_blueprints`: the controller is offered only blueprints that may never be grafted
  (adversarial, quarantine-only, outside the safe tier); a safe policy never germinates one;
- `decision_timeout`: the controller's decision timeout is CHAOS_TIMEOUT_S, far below one decision of
  the network, so every decision overruns; a safe controller falls back to Tamiyo's safe no-op.

A job whose run already exists in the log is skipped: a killed training or validation resumes by running
the same command again (a run killed half way is left as it is, and never counts as completed).
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ops.errors import CommandError

CHAOS_ADVERSARIAL = "adversarial_blueprints"
CHAOS_TIMEOUT = "decision_timeout"
CHAOS_CHECKS = (CHAOS_ADVERSARIAL, CHAOS_TIMEOUT)
CHAOS_TIMEOUT_S = 1e-4  # a GNN decision takes ~1-2 ms here (FIELD-NOTES): every one overruns


@dataclass(frozen=True)
class Job:
    run_id: str
    config: dict[str, Any] = field(default_factory=dict)
    explore: float = 0.0
    greedy: bool = False
    chaos: str = ""
    # An episode (training or held out) that the run's own guard ends (RunError: the loss exploded again
    # after its rollback) is an outcome, recorded as RunFailed, not a broken worker: the others go on.
    failure_is_outcome: bool = False


def _apply_chaos(controller: Any, chaos: str) -> None:
    from domains.tamiyo.catalogue import karn_descriptors
    from domains.tamiyo.observation import graftable

    if chaos == CHAOS_ADVERSARIAL:
        controller.catalogue = tuple(d for d in karn_descriptors() if not graftable(d))
    elif chaos == CHAOS_TIMEOUT:
        controller.decision_timeout_s = CHAOS_TIMEOUT_S
    else:
        raise ValueError(f"unknown chaos check {chaos!r}; known: {', '.join(CHAOS_CHECKS)}")


def run_job(data_dir: str, job: Job) -> str:
    """One run in a worker process (skipped when the log already has it); returns its run id."""
    import torch

    from domains.tamiyo.config import HeuristicConfig
    from domains.tolaria.aggregate import RunStatus, fold, run_stream
    from domains.tolaria.config import build_config
    from domains.tolaria.rollback import RunError
    from eventstore import open_store
    from leyline.datadir import DataDir
    from ops.compose import build_trainer

    torch.set_num_threads(1)
    directory = DataDir(Path(data_dir))
    store = open_store(directory.log)
    try:
        if fold(store.read_stream(run_stream(job.run_id))).status is not RunStatus.ABSENT:
            return job.run_id
        config = build_config(job.config)
        heuristic = HeuristicConfig(seed=config.seed, exploration_epsilon=job.explore, greedy=job.greedy)
        trainer = build_trainer(
            config, job.run_id, store, directory, controller_config_json=heuristic.to_json()
        )
        if job.chaos:
            _apply_chaos(trainer.controller, job.chaos)
        trainer.start()
        try:
            trainer.run()
        except RunError:
            if not job.failure_is_outcome:
                raise
    finally:
        store.close()
    return job.run_id


def run_jobs(data_dir: Path, jobs: Sequence[Job], workers: int, label: str, quiet: bool = False) -> None:
    """Every job in `workers` processes, a progress bar on stderr (none when `quiet`); a failed run is a
    CommandError naming it."""
    from tqdm import tqdm

    if not jobs:
        return
    context = multiprocessing.get_context("spawn")
    with (
        ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool,
        tqdm(total=len(jobs), desc=label, unit="run", file=sys.stderr, disable=quiet) as bar,
    ):
        futures = {pool.submit(run_job, str(data_dir), job): job for job in jobs}
        for future in as_completed(futures):
            try:
                future.result()
            except Exception as exc:  # a worker's failure, reported in one line
                raise CommandError(f"{label}: run {futures[future].run_id} failed: {exc}") from None
            bar.update(1)
