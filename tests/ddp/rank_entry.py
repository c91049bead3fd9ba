"""One rank of a test's data-parallel run: `esper run` (ops.cli) with three faults for the tests.

    ESPER_TEST_PARAMS_DIR=DIR   the rank saves its parameters after the last epoch as DIR/rank<R>.pt
    ESPER_TEST_SKEW_RANK=R      rank R grafts every seed with one extra parameter: a different shape,
                                and writes the wall-clock time of its graft (ns) to $ESPER_TEST_SKEW_MARK
    ESPER_TEST_HANG_RANK=R      rank R hangs in its own boundary work from epoch $ESPER_TEST_HANG_EPOCH on:
                                rank 0 inside its end-of-epoch hook (where the controller decides), another
                                rank inside applying rank 0's command; it writes "<epoch> <wall-clock ns>"
                                to $ESPER_TEST_HANG_MARK, then blocks for good
    ESPER_TEST_HANG_IN=checkpoint   rank 0 hangs writing its checkpoint instead, outside its boundary work

Started as `python -m tests.ddp.rank_entry run …` with torchrun's variables (RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT) set by the test.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from domains.tezzeret.source import SeedModuleSource
from domains.tolaria import hook
from domains.tolaria.report import RunSummary
from domains.tolaria.trainer import Trainer
from ops.cli import main

RANK = int(os.environ.get("RANK", "0"))


def save_parameters_at_finish(directory: Path) -> None:
    finish = Trainer.finish

    def finish_and_save(trainer: Trainer) -> RunSummary:
        # before finish tears down the seeds still in flight
        parameters = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
        torch.save(parameters, directory / f"rank{RANK}.pt")
        return finish(trainer)

    Trainer.finish = finish_and_save  # type: ignore[method-assign,assignment]


def skew_grafts(mark: Path) -> None:
    load_module = SeedModuleSource.load_module

    def skewed(
        source: SeedModuleSource,
        blueprint_id: str,
        parameters: Mapping[str, float],
        slot_kind: int,
        slot_shape: Sequence[int],
        **options: Any,
    ) -> tuple[nn.Module, str]:
        module, artifact_hash = load_module(
            source, blueprint_id, parameters, slot_kind, slot_shape, **options
        )
        module.register_parameter("skew", nn.Parameter(torch.zeros(3)))
        mark.write_text(str(time.time_ns()))
        return module, artifact_hash

    SeedModuleSource.load_module = skewed  # type: ignore[method-assign,assignment]


def hang_at_boundary(from_epoch: int, mark: Path) -> None:
    def hang(epoch: int) -> None:
        mark.write_text(f"{epoch} {time.time_ns()}")
        threading.Event().wait()

    if RANK == 0 and os.environ.get("ESPER_TEST_HANG_IN") == "checkpoint":
        checkpoint = Trainer.checkpoint

        def hanging_checkpoint(trainer: Trainer, events: Any) -> Any:
            if trainer.epoch >= from_epoch:
                hang(trainer.epoch)
            return checkpoint(trainer, events)

        Trainer.checkpoint = hanging_checkpoint  # type: ignore[method-assign,assignment]
    elif RANK == 0:
        end_of_epoch = hook.end_of_epoch

        def hanging_hook(trainer: Trainer, measured: Any, seed_events: Any) -> Any:
            if measured.epoch >= from_epoch:
                hang(measured.epoch)
            return end_of_epoch(trainer, measured, seed_events)

        hook.end_of_epoch = hanging_hook  # type: ignore[assignment]
    else:
        command = hook.command

        def hanging_command(trainer: Trainer, envelope: Any, epoch: int) -> Any:
            if epoch >= from_epoch:
                hang(epoch)
            return command(trainer, envelope, epoch)

        hook.command = hanging_command


if __name__ == "__main__":
    if "ESPER_TEST_PARAMS_DIR" in os.environ:
        save_parameters_at_finish(Path(os.environ["ESPER_TEST_PARAMS_DIR"]))
    if os.environ.get("ESPER_TEST_SKEW_RANK") == str(RANK):
        skew_grafts(Path(os.environ["ESPER_TEST_SKEW_MARK"]))
    if os.environ.get("ESPER_TEST_HANG_RANK") == str(RANK):
        hang_at_boundary(int(os.environ["ESPER_TEST_HANG_EPOCH"]), Path(os.environ["ESPER_TEST_HANG_MARK"]))
    sys.exit(main(sys.argv[1:]))
