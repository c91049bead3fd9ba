"""How a run ends: completed (seeds in flight torn down, the final model measured), or failed.

summary = finish(trainer)   # RunCompleted, the writer flushed and closed
fail(trainer, exc)          # RunFailed (an interrupt records nothing: the run can be resumed)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from domains.kasmina.manager import SEED_CATEGORY
from domains.tolaria.aggregate import RunStatus, run_stream
from domains.tolaria.collective import RankFailure
from domains.tolaria.hosts import count_parameters
from domains.tolaria.loop import evaluate
from domains.tolaria.report import GraftSummary, RunSummary, graft_summaries, model_sha256
from eventstore import EventFilter
from leyline import pb, stream_name
from leyline.envelope import new_event_id

if TYPE_CHECKING:
    from domains.tolaria.trainer import Trainer


def finish(trainer: Trainer) -> RunSummary:
    # Seeds still in flight are torn down first (SPEC §7), in the same append as RunCompleted, so that
    # the accuracies, parameters and model_sha256 describe the model the run ends with: a TERMINATED
    # seed is not part of it. Measured here rather than taken from the last epoch: a run resumed after
    # its final checkpoint (killed before RunCompleted) trains no epoch in this process.
    teardown = trainer.kasmina.teardown(trainer.epoch)
    splits = trainer.splits
    correct = torch.stack(
        [evaluate(trainer.model, trainer.loss_fn, s)[1] for s in (splits.validation, splits.test)]
    )
    validation_correct, test_correct = correct.tolist()
    validation_accuracy = validation_correct / len(splits.validation)
    test_accuracy = test_correct / len(splits.test)
    digest = model_sha256(trainer.model)
    parameters = count_parameters(trainer.model)
    completed = pb.RunCompleted(
        run_id=trainer.run_id,
        epochs=trainer.epoch,
        test_accuracy=test_accuracy,
        parameters=parameters,
        model_sha256=digest,
    )
    trainer.sink.emit([*teardown, trainer.envelope("RunCompleted", completed, trainer.epoch)])
    last_position = trainer.sink.flush()
    trainer.sink.close()
    return RunSummary(
        run_id=trainer.run_id,
        status=RunStatus.COMPLETED.value,
        epochs=trainer.epoch,
        test_accuracy=test_accuracy,
        validation_accuracy=validation_accuracy,
        parameters=parameters,
        seeds=trainer.seeds_by_stage(),
        last_position=last_position,
        model_sha256=digest,
        events_written=trainer.sink.events_written,
        rollbacks=trainer.rollbacks,
        resumed=trainer.resumed,
        device=str(trainer.device),
        grafts=grafts(trainer),
    )


def grafts(trainer: Trainer) -> list[GraftSummary]:
    """The run's grafts as its log tells them (a resumed run's earlier ones included)."""
    seed_streams = (stream_name(SEED_CATEGORY, f"{trainer.run_id}.{slot}") for slot in trainer.kasmina.slots)
    wanted = EventFilter(
        streams=frozenset({run_stream(trainer.run_id), *seed_streams}),
        event_types=frozenset({"EpochCompleted", "SeedGrafted", "SeedTransitioned"}),
    )
    return graft_summaries(trainer.store.read_all(event_filter=wanted))


def fail(trainer: Trainer, exc: BaseException) -> None:
    """Record RunFailed for an error (an interrupt is not a failure: the run can be resumed)."""
    if isinstance(exc, KeyboardInterrupt):
        trainer.sink.close()
        return
    failed = pb.RunFailed(
        run_id=trainer.run_id, error=f"{type(exc).__name__}: {exc}"[:500], epoch=trainer.epoch
    )
    if isinstance(exc, RankFailure):  # a data-parallel run: the rank and boundary the failure names
        failed.rank, failed.epoch = exc.rank, exc.epoch
    try:
        trainer.sink.emit([trainer.envelope("RunFailed", failed, trainer.epoch, new_event_id())])
        trainer.sink.flush()
    finally:
        trainer.sink.close()
