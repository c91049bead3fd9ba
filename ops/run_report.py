"""What `esper run` shows while it trains and when it ends: the progress bar on stderr and the summary."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from domains.tolaria.aggregate import mode_name

if TYPE_CHECKING:
    from domains.tolaria.loop import EpochMeasurements
    from domains.tolaria.report import GraftSummary, Progress, RunSummary
    from domains.tolaria.rollback import RollbackResult


@contextmanager
def progress_bar(args: argparse.Namespace, enabled: bool = True) -> Iterator[Progress]:
    """Epochs, loss, accuracy and seeds by stage on stderr; created once the run knows its epochs (by
    rank 0 alone in a data-parallel run)."""
    from domains.tolaria.report import Progress

    if not enabled:
        yield Progress()
        return
    bars: list[tqdm[Any]] = []

    def start(total: int, epoch: int) -> None:
        bars.append(tqdm(total=total, initial=epoch, unit="epoch", file=sys.stderr, disable=args.json))

    def on_epoch(m: EpochMeasurements, seeds: dict[str, int]) -> None:
        bar = bars[-1]
        bar.n = m.epoch
        bar.set_postfix(
            loss=f"{m.training_loss:.3f}",
            acc=f"{m.validation_accuracy:.3f}",
            seeds=" ".join(f"{k}:{v}" for k, v in sorted(seeds.items())) or "none",
        )

    def on_rollback(result: RollbackResult) -> None:
        mode = mode_name(result.mode)
        bar = bars[-1]
        # stderr, as the bar: with --json, stdout holds only the summary
        bar.write(
            f"rolled back to epoch {result.target_epoch} ({mode}, {result.duration_ms:.0f} ms)", sys.stderr
        )
        bar.n = result.target_epoch
        bar.refresh()

    try:
        yield Progress(on_start=start, on_epoch=on_epoch, on_rollback=on_rollback)
    finally:
        for bar in bars:
            bar.close()


def graft_line(graft: GraftSummary) -> str:
    """One graft: slot, blueprint, parameters added, validation accuracy before and after, and its fate."""
    return (
        f"  graft slot {graft.slot}  {graft.blueprint_id} +{graft.parameters} parameters, validation "
        f"accuracy {graft.accuracy_before:.4f} (epoch {graft.epoch}) → {graft.accuracy_after:.4f} (epoch "
        f"{graft.end_epoch}): {graft.stage}" + (f" ({graft.reason})" if graft.reason else "")
    )


def print_summary(summary: RunSummary) -> None:
    seeds = (
        ", ".join(f"{count} {outcome}" for outcome, count in sorted(summary.seeds.items())) or "none grafted"
    )
    lines = [
        f"run {summary.run_id} {summary.status}: {summary.epochs} epochs on {summary.device}"
        + (" (resumed)" if summary.resumed else ""),
        f"  held-out test accuracy  {summary.test_accuracy:.4f}",
        f"  validation accuracy     {summary.validation_accuracy:.4f}",
        f"  parameters              {summary.parameters}",
        f"  seeds                   {seeds}",
        f"  rollbacks               {summary.rollbacks}",
        f"  events written          {summary.events_written} (log head {summary.last_position})",
        f"  model sha256            {summary.model_sha256}",
        *(graft_line(graft) for graft in summary.grafts),
        f"look deeper: esper audit run {summary.run_id}",
    ]
    print("\n".join(lines))
