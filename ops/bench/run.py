"""The training loop's costs: overhead against a plain PyTorch loop, hook time, checkpoints, resume, rollback.

`epoch_overhead_ratio`: Esper's full loop (events, Kasmina's lifecycle step, the timed end-of-epoch hook
with the no-op controller, a checkpoint every epoch, the file event store) against a plain PyTorch loop
training the same host (cnn-lite, with the same dormant seed slots) on the same data (digits) with the
same optimizer and batch order, both loops in one process. The two alternate in 16 pairs of blocks of 8
epochs, which of them goes first alternating from one pair to the next; each full block ends with a
flush of the event writer, so the checkpoint writes and appends done off the training thread are
counted. Short blocks keep the two halves of a pair close in time, so a change in the machine's load
between them is small. The pairs run in 5 fresh processes (16 pairs each, one process after the other):
a process's own layout moves its ratio by several percent (six processes of this bench on one quiet
machine: medians 1.049 to 1.126; the plain loop against a second plain loop: 0.992 to 1.013), more than
many pairs within one process can show. Ratio = the median of every block's time ratio; the note gives
each process's median and the distribution-free interval of their median (order statistics; with 5, their
range: 94 % coverage), the same in CPU time, and the share of a full block spent in its final flush: the
last checkpoint's file sync and log sync are disk latency (a few ms each here) that a block of 8 epochs
pays once and a whole run once at its end.
Single-threaded torch, as `esper run` uses by default.
`epoch_overhead_cpu_ratio`: the same blocks timed in CPU time of the whole process (the writer thread's
work included), a companion figure that a loaded machine disturbs far less than wall time.
`epoch_overhead_ratio_fashion`: the same on fashion-mnist (a longer epoch, one epoch a block, 11 blocks so
that the median's interval reaches 90 % coverage; the CPU-time ratio in its note); where the loader or its
data is missing it is reported as not measured, with the reason in its note.

`hook_p50_ms` / `hook_p95_ms`: the end-of-epoch hook (assembly, controller, command, guard) over the
full loop's epochs. `checkpoint_write_ms`: serialize + write + fsync + rename of one checkpoint.
`resume_s`: from an open store to a trainer ready to train (fold the run's stream, rebuild the host and
data, load and verify the last checkpoint), in process. `fast_rollback_ms`: a rollback to a cached
checkpoint, from the request to restored state (flush, log read, restore). `full_rollback_s`: the same
for a checkpoint older than the cache, read from disk and verified.
`default_run_s`: `esper run` with its defaults on a fresh data directory, start to exit, beside the same
with `--controller noop` (ops/bench/_default_run.py).
"""

from __future__ import annotations

import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import torch

from domains.tolaria import checkpoint as ckpt
from domains.tolaria.config import RunConfig
from domains.tolaria.data import BUILTIN_DATASETS, batches, epoch_order, eval_batches
from domains.tolaria.loop import EVAL_BATCH
from domains.tolaria.trainer import Trainer
from domains.tolaria.workload import build_model, build_optimizer, seed_everything
from eventstore import open_store
from leyline import pb
from leyline.datadir import DataDir
from ops.bench import BenchOptions, Result, median_interval, percentile
from ops.bench._default_run import default_run
from ops.compose import new_run, resume

DESCRIPTION = "training loop overhead vs plain PyTorch, hook time, checkpoint write, resume, rollback"
OVERHEAD_TARGET = 1.05
FASHION = "fashion-mnist"
FASHION_OVERHEAD_TARGET = 1.02
FASHION_BLOCKS = 11
DIGITS_BLOCKS, DIGITS_BLOCK_EPOCHS = 16, 8
DIGITS_PROCESSES, QUICK_PROCESSES = 5, 2
FAST_ROLLBACK_TARGET_MS = 500.0
FULL_ROLLBACK_TARGET_S = 12.0


class PlainLoop:
    """What a user would write without Esper: same host, data, optimizer, batch order and evaluation batch."""

    def __init__(self, trainer: Trainer) -> None:
        seed_everything(trainer.config.seed)
        self.model = build_model(trainer.config.host, trainer.host_spec, trainer.device)
        self.optimizer = build_optimizer(self.model.parameters(), trainer.config)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.splits = trainer.splits
        self.config = trainer.config
        self.epoch = 0

    def run_epoch(self) -> float:
        self.epoch += 1
        self.model.train()
        total = torch.zeros((), device=self.splits.train.inputs.device)
        order = epoch_order(self.config.seed, self.epoch, len(self.splits.train))
        for batch in batches(self.splits.train, order, self.config.batch_size):
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss_fn(self.model(batch.inputs), batch.targets)
            loss.backward()
            self.optimizer.step()
            total += loss.detach() * len(batch)
        self.model.eval()
        correct = torch.zeros((), dtype=torch.long, device=total.device)
        with torch.no_grad():  # in batches of Esper's size: one forward over a large split is slower
            for batch in eval_batches(self.splits.validation, EVAL_BATCH):
                correct += (self.model(batch.inputs).argmax(dim=1) == batch.targets).sum()
        return float(torch.stack([total, correct.to(total.dtype)]).sum())


class Blocks(NamedTuple):
    """Per block: the wall-time and CPU-time ratios (full loop with its writer flushed / plain loop), the
    share of the full block's wall time spent waiting in that final flush; and every epoch's hook time."""

    wall: list[float]
    cpu: list[float]
    flush_share: list[float]
    hooks: list[float]


def overhead(trainer: Trainer, plain: PlainLoop, blocks: int, block_epochs: int) -> Blocks:
    """`blocks` pairs of blocks, the full loop's (ended by a flush of its writer) and the plain loop's, the
    order alternating from pair to pair so that neither always runs second after the other has warmed or
    disturbed the machine, and a drift in load over a pair weighs on both sides alike."""
    result = Blocks([], [], [], [])

    def full_block() -> tuple[float, float, float]:
        started, started_cpu = time.perf_counter(), time.process_time()
        for _ in range(block_epochs):
            trainer.run_epoch()
            result.hooks.append(trainer.last_hook_ms)
        flushing = time.perf_counter()
        trainer.sink.flush()
        ended = time.perf_counter()
        return ended - started, time.process_time() - started_cpu, ended - flushing

    def plain_block() -> tuple[float, float]:
        started, started_cpu = time.perf_counter(), time.process_time()
        for _ in range(block_epochs):
            plain.run_epoch()
        return time.perf_counter() - started, time.process_time() - started_cpu

    for number in range(blocks):
        if number % 2:
            plain_wall, plain_cpu = plain_block()
            full, full_cpu, flush = full_block()
        else:
            full, full_cpu, flush = full_block()
            plain_wall, plain_cpu = plain_block()
        result.wall.append(full / plain_wall)
        result.cpu.append(full_cpu / plain_cpu)
        result.flush_share.append(flush / full)
    return result


@contextmanager
def digits_run(data_dir: DataDir, run_id: str, epochs: int) -> Iterator[Trainer]:
    """A new run on digits with the no-op controller; its writer and its store are closed on leaving."""
    store = open_store(data_dir.log)
    try:
        trainer = new_run(store, data_dir, RunConfig(epochs=epochs, seed=0, controller="noop"), run_id)
        yield trainer
        trainer.sink.close()
    finally:
        store.close()


def overhead_in_process(blocks: int, block_epochs: int) -> Blocks:
    """`overhead` on digits with a new run in a scratch directory: a worker process's entry point."""
    epochs = blocks * block_epochs + 1
    with (
        tempfile.TemporaryDirectory(prefix="esper-bench-overhead-") as scratch,
        digits_run(DataDir(Path(scratch)), "rbenchoverhead", epochs) as trainer,
    ):
        return overhead(trainer, PlainLoop(trainer), blocks, block_epochs)


def overhead_in_processes(processes: int, blocks: int, block_epochs: int) -> list[Blocks]:
    """`overhead_in_process` in `processes` fresh processes, one after the other (never two at once)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context, max_tasks_per_child=1) as pool:
        return [pool.submit(overhead_in_process, blocks, block_epochs).result() for _ in range(processes)]


def processes_result(
    name: str, ratios: list[list[float]], target: float | None = None, baseline: str = ""
) -> Result:
    """The median of every process's block ratios, with the interval of the processes' medians."""
    result = overhead_result(name, [ratio for process in ratios for ratio in process], target, baseline)
    result.note = (
        f"median of {sum(map(len, ratios))} block ratios in {len(ratios)} processes, {processes_text(ratios)}"
    )
    return result


def processes_text(ratios: list[list[float]]) -> str:
    medians = [statistics.median(process) for process in ratios]
    listed = ", ".join(f"{median:.3f}" for median in medians)
    return f"the processes' medians {listed}: {interval_text(medians)}"


def overhead_result(
    name: str, ratios: list[float], target: float | None = None, baseline: str = ""
) -> Result:
    ratio = statistics.median(ratios)
    return Result(
        name,
        ratio,
        "ratio",
        baseline_name=baseline or "plain_pytorch_loop",
        baseline=1.0,
        ratio=ratio,
        target=None if target is None else f"<= {target}",
        met=None if target is None else ratio <= target,
        note=f"median of {len(ratios)} block ratios, {interval_text(ratios)}",
    )


def interval_text(ratios: list[float]) -> str:
    low, high, coverage = median_interval(ratios)
    return f"{coverage:.0%} interval [{low:.3f}, {high:.3f}]"


def cpu_text(ratios: list[float]) -> str:
    """The same blocks' CPU-time ratios, printed beside the wall-time figure."""
    return f"in CPU time median {statistics.median(ratios):.3f}, {interval_text(ratios)}"


def fashion_overhead(options: BenchOptions, data_dir: DataDir) -> Result:
    # enough one-epoch blocks for the median's interval to reach its 90 % coverage (11 give 93 %: the
    # 3rd to 9th of the sorted ratios); an epoch is seconds here, so few blocks cannot bound 1.02
    blocks = 3 if options.quick else FASHION_BLOCKS
    if FASHION not in BUILTIN_DATASETS:
        return not_measured(f"this build has no {FASHION} loader (datasets: {', '.join(BUILTIN_DATASETS)})")
    config = RunConfig(epochs=blocks + 1, seed=0, controller="noop", dataset=FASHION)
    store = open_store(data_dir.log)
    try:
        try:
            trainer = new_run(store, data_dir, config, "rbenchfashion")
        except Exception as exc:  # the loader's own error: data missing or not what it should be
            return not_measured(f"{FASHION} could not be loaded: {str(exc).splitlines()[0]}")
        options.progress(f"overhead on {FASHION}: {blocks} blocks of 1 epoch, full loop vs plain loop")
        measured = overhead(trainer, PlainLoop(trainer), blocks, 1)
        trainer.sink.close()
    finally:
        store.close()
    result = overhead_result("epoch_overhead_ratio_fashion", measured.wall, FASHION_OVERHEAD_TARGET)
    result.note = f"{result.note}; {cpu_text(measured.cpu)}"
    return result


def not_measured(reason: str) -> Result:
    return Result(
        "epoch_overhead_ratio_fashion",
        float("nan"),
        "ratio",
        baseline_name="plain_pytorch_loop",
        target=f"<= {FASHION_OVERHEAD_TARGET}",
        note=f"not measured: {reason}",
    )


def run(options: BenchOptions) -> list[Result]:
    blocks, block_epochs = (3, 5) if options.quick else (DIGITS_BLOCKS, DIGITS_BLOCK_EPOCHS)
    processes = QUICK_PROCESSES if options.quick else DIGITS_PROCESSES
    options.progress(
        f"overhead: {processes} processes of {blocks} pairs of blocks of {block_epochs} epochs, "
        "full loop vs plain loop"
    )
    measured = overhead_in_processes(processes, blocks, block_epochs)
    hooks = [hook for process in measured for hook in process.hooks]
    with tempfile.TemporaryDirectory(prefix="esper-bench-run-") as scratch:
        data_dir = DataDir(Path(scratch))
        with digits_run(data_dir, "rbench001", blocks * block_epochs + 1) as trainer:
            cache, hook_budget_ms = trainer.config.fast_rollback_cache, trainer.config.hook_budget_ms
            for _ in range(block_epochs):
                trainer.run_epoch()

            options.progress("checkpoint writes")
            writes = [
                checkpoint_write_ms(trainer, DataDir(data_dir.root / f"w{i}"))
                for i in range(10 if options.quick else 30)
            ]

            options.progress("fast and full rollback")
            fast = []
            for _ in range(3):
                trainer.run_epoch()
                trainer.run_epoch()
                fast.append(rollback_ms(trainer, trainer.epoch - 1, pb.ROLLBACK_MODE_FAST))
            for _ in range(cache + 1):
                trainer.run_epoch()
            full_ms = rollback_ms(trainer, trainer.epoch - cache - 1, pb.ROLLBACK_MODE_FULL)

        options.progress("resume")
        resumes = []
        for _ in range(2 if options.quick else 5):
            store = open_store(data_dir.log, create=False)
            try:
                started = time.perf_counter()
                resumed = resume(store, data_dir, "rbench001")
                resumes.append(time.perf_counter() - started)
                resumed.sink.close()
            finally:
                store.close()

        fashion = fashion_overhead(options, DataDir(Path(scratch) / "fashion"))

    wall, cpu = [process.wall for process in measured], [process.cpu for process in measured]
    flush_share = [share for process in measured for share in process.flush_share]
    digits = processes_result("epoch_overhead_ratio", wall, OVERHEAD_TARGET)
    digits_cpu = processes_result("epoch_overhead_cpu_ratio", cpu, baseline="plain_pytorch_loop_cpu")
    digits.note = (
        f"{digits.note}; in CPU time median {digits_cpu.value:.3f}, {processes_text(cpu)}; "
        "the block's final writer flush (the last checkpoint's file and log syncs) is a median "
        f"{statistics.median(flush_share):.1%} of a full block's wall time"
    )
    return [
        digits,
        digits_cpu,
        fashion,
        *(
            Result(
                f"hook_{name}_ms",
                value,
                "ms",
                target=f"<= {hook_budget_ms}",
                met=value <= hook_budget_ms,
            )
            for name, value in (("p50", percentile(hooks, 0.5)), ("p95", percentile(hooks, 0.95)))
        ),
        Result("checkpoint_write_ms", statistics.median(writes), "ms"),
        Result("resume_s", statistics.median(resumes), "s"),
        Result(
            "fast_rollback_ms",
            statistics.median(fast),
            "ms",
            target=f"<= {FAST_ROLLBACK_TARGET_MS}",
            met=statistics.median(fast) <= FAST_ROLLBACK_TARGET_MS,
        ),
        Result(
            "full_rollback_s",
            full_ms / 1000,
            "s",
            target=f"<= {FULL_ROLLBACK_TARGET_S}",
            met=full_ms / 1000 <= FULL_ROLLBACK_TARGET_S,
        ),
        default_run(options),
    ]


def checkpoint_write_ms(trainer: Trainer, directory: DataDir) -> float:
    started = time.perf_counter()
    ckpt.write_file(directory, ckpt.serialize(trainer.epoch, trainer.components()))
    return (time.perf_counter() - started) * 1000


def rollback_ms(trainer: Trainer, epoch: int, expected_mode: int) -> float:
    result = trainer.rollback_to(epoch, "bench", "bench")
    if result.mode != expected_mode:
        raise RuntimeError(f"rollback to epoch {epoch} ran in mode {result.mode}, expected {expected_mode}")
    return result.duration_ms
