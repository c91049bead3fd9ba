"""Runs do not livelock or die on their own growth (issue 20), with the real controller.

What a run learns from a rollback is kept on the run aggregate, outside the checkpoint a rollback
restores, so an identical deterministic replay is never retried (the controller's rollback request is
rejected, the guard fails at once instead of replaying the same spike); a loss change caused by a culled
seed is the seed's, not an explosion of the host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domains.kasmina import KasminaConfig
from domains.tamiyo import HeuristicConfig
from domains.tamiyo.risk import RiskThresholds
from domains.tolaria.aggregate import (
    IdenticalReplay,
    RequestRollback,
    decide_rollback,
    fold,
    run_stream,
)
from domains.tolaria.config import build_config
from domains.tolaria.rollback import RunError
from domains.tolaria.trainer import Trainer
from eventstore import EventStore, open_store
from leyline import new_envelope, pb
from leyline.datadir import DataDir
from leyline.lifecycle import LifecycleConfig
from ops.compose import build_trainer
from tests.tolaria.helpers import SMALL, payloads, run_events


def run_bounded(trainer: Trainer, limit: int) -> int:
    """run_epoch until the run reaches its epochs or `limit` calls (a livelock never reaches them)."""
    calls = 0
    while trainer.epoch < trainer.config.epochs and calls < limit:
        trainer.run_epoch()
        calls += 1
    return calls


def tamiyo_trainer(
    data_dir: Path, run_id: str, config: dict[str, Any], heuristic: HeuristicConfig, **kw: Any
) -> tuple[Trainer, EventStore]:
    """A run grown by the real controller (TamiyoController + HeuristicPolicy, built by ops.compose)."""
    store = open_store(DataDir(data_dir).log)
    trainer = build_trainer(
        build_config({**config, "controller": "tamiyo"}),
        run_id,
        store,
        DataDir(data_dir),
        controller_config_json=heuristic.to_json(),
        **kw,
    )
    trainer.start()
    return trainer, store


def every_event(data_dir: Path) -> list[pb.EventEnvelope]:
    store = open_store(DataDir(data_dir).log, create=False)
    try:
        return list(store.read_all())
    finally:
        store.close()


# A hook budget no loaded machine overruns: an overrun puts the controller in conservative mode (a
# wall-clock event), and these scenarios need the controller's decisions to depend on the seed alone.
UNHURRIED = 1e6


# ---------------------------------------------------------------------- the aggregate's rule


def rollback_events(run_id: str, pairs: list[tuple[int, int]]) -> list[pb.EventEnvelope]:
    events = [new_envelope("RunStarted", run_stream(run_id), pb.RunStarted(run_id=run_id), run_id=run_id)]
    for epoch in range(1, 12):
        manifest = pb.CheckpointManifest(
            run_id=run_id, epoch=epoch, content_hash=f"h{epoch}", path=f"c{epoch}"
        )
        events.append(
            new_envelope(
                "CheckpointCommitted",
                run_stream(run_id),
                pb.CheckpointCommitted(manifest=manifest),
                epoch=epoch,
            )
        )
    for from_epoch, target in pairs:
        requested = pb.RollbackRequested(run_id=run_id, target_epoch=target, requested_by="tamiyo")
        completed = pb.RollbackCompleted(run_id=run_id, target_epoch=target)
        events.append(new_envelope("RollbackRequested", run_stream(run_id), requested, epoch=from_epoch))
        events.append(new_envelope("RollbackCompleted", run_stream(run_id), completed, epoch=from_epoch))
        for epoch in range(target + 1, 12):  # the replayed timeline commits its checkpoints again
            manifest = pb.CheckpointManifest(
                run_id=run_id, epoch=epoch, content_hash=f"r{epoch}", path=f"r{epoch}"
            )
            committed = pb.CheckpointCommitted(manifest=manifest)
            events.append(new_envelope("CheckpointCommitted", run_stream(run_id), committed, epoch=epoch))
    for position, envelope in enumerate(events, start=1):
        envelope.global_position = position
    return events


@given(
    done=st.lists(
        st.tuples(st.integers(2, 11), st.integers(1, 10)).filter(lambda p: p[1] < p[0]), max_size=5
    ),
    asked=st.tuples(st.integers(2, 11), st.integers(1, 10)).filter(lambda p: p[1] < p[0]),
    mode=st.sampled_from([pb.ROLLBACK_MODE_FAST, pb.ROLLBACK_MODE_FULL]),
)
def test_a_rollback_is_refused_exactly_when_the_run_already_did_it(
    done: list[tuple[int, int]], asked: tuple[int, int], mode: int
) -> None:
    state = fold(rollback_events("rprop", done))
    assert [(r.from_epoch, r.target_epoch) for r in state.rolled_back] == done  # survives every rollback
    from_epoch, target = asked
    request = RequestRollback(
        "rprop", target, "tamiyo", "r", mode=mode, exact=False, from_epoch=from_epoch, repeatable=False
    )
    if asked in done:
        with pytest.raises(
            IdenticalReplay, match=f"already rolled back from epoch {from_epoch} to epoch {target}"
        ):
            decide_rollback(state, request)
    else:
        assert decide_rollback(state, request).target_epoch == target
    # an operator's explicit request may repeat a replay
    operator = RequestRollback(
        "rprop", target, "operator", "r", mode=mode, exact=False, from_epoch=from_epoch
    )
    assert decide_rollback(state, operator).target_epoch == target


def test_every_rollback_is_remembered_across_timelines() -> None:
    """The rollbacks are remembered by the run's stream, whatever timeline the checkpoints are in."""
    state = fold(rollback_events("rmem", [(5, 3), (4, 2)]))
    assert state.generation == 2 and [c.epoch for c in state.checkpoints][-1] == 11
    assert state.has_rolled_back(5, 3) and state.has_rolled_back(4, 2) and not state.has_rolled_back(5, 2)


# ---------------------------------------------------------------------- the controller's livelock

# Validation loss that wobbles (a large learning rate) and drift thresholds low enough that a wobble is
# critical: the risk engine asks for a rollback to the last safe epoch, and the replay is identical.
WOBBLING_EPOCHS = 12
WOBBLING = {**SMALL, "epochs": WOBBLING_EPOCHS, "learning_rate": 1.0, "hook_budget_ms": UNHURRIED}
FORCED_RISK = HeuristicConfig(thresholds=RiskThresholds(loss_drift=(0.02, 0.04, 0.06, 0.08)))


def test_the_controllers_rollback_is_not_repeated_by_its_own_replay(tmp_path: Path) -> None:
    """Before the fix: 47 rollbacks from epoch 2 to epoch 1 in 48 calls, never past epoch 1."""
    trainer, store = tamiyo_trainer(tmp_path, "rlive", WOBBLING, FORCED_RISK)
    try:
        calls = run_bounded(trainer, limit=3 * WOBBLING_EPOCHS)
        assert trainer.epoch == WOBBLING_EPOCHS, f"stuck at epoch {trainer.epoch} after {calls} epochs run"
        trainer.finish()
    finally:
        store.close()
    events = run_events(tmp_path, "rlive")
    requested = [
        (e.epoch, p)
        for e in events
        if e.event_type == "RollbackRequested"
        for p in payloads([e], "RollbackRequested")
    ]
    assert requested and all(p.requested_by == "tamiyo" for _, p in requested)
    state = fold([e for e in events if e.stream == run_stream("rlive")])
    pairs = [(r.from_epoch, r.target_epoch) for r in state.rolled_back]
    assert len(pairs) == len(set(pairs)), pairs  # no rollback was ever done twice
    rejected = payloads(every_event(tmp_path), "CommandRejected")  # on the commands' own streams
    assert [p.code for p in rejected if p.code == "identical_replay"], "the replayed request was not refused"
    assert state.status.value == "completed"


# ---------------------------------------------------------------------- the guard and a culled seed

# A weak host (a pointwise first stage) that a grafted seed helps a lot, a contribution no seed can reach
# (so Kasmina culls the seed at the end of its probation), and an explosion factor low enough that the
# loss jump of losing the seed would be called an explosion.
EXPLOSION_FACTOR = 1.5
WEAK_HOST = {
    "epochs": 16,
    "dataset": "digits",
    "batch_size": 64,
    "host_options": {"channels1": 8, "kernel1": 1},
    "loss_explosion_factor": EXPLOSION_FACTOR,
    "loss_explosion_floor": 0.0,  # the relative rule alone: what the cull's reference reset must handle
    "hook_budget_ms": UNHURRIED,
}
EAGER = HeuristicConfig(plateau_window=2, plateau_epsilon=0.5)
UNREACHABLE = KasminaConfig(lifecycle=LifecycleConfig(min_contribution=1.0))


def test_a_loss_change_caused_by_a_culled_seed_is_not_an_explosion(tmp_path: Path) -> None:
    """Before the fix: the guard rolled back the identical spike after the cull three times and failed."""
    trainer, store = tamiyo_trainer(tmp_path, "rcull", WEAK_HOST, EAGER, kasmina_config=UNREACHABLE)
    losses: dict[int, float] = {}
    try:
        while trainer.epoch < trainer.config.epochs:
            measured = trainer.run_epoch()
            losses[measured.epoch] = measured.training_loss
        trainer.finish()
    finally:
        store.close()
    events = run_events(tmp_path, "rcull")
    seeds = payloads(every_event(tmp_path), "SeedTransitioned")
    culls = [p.epoch for p in seeds if p.to_stage == pb.SEED_STAGE_CULLED]
    assert culls, "no seed was culled: the scenario no longer exercises the guard"

    def spikes(cull: int) -> bool:
        before = [losses[e] for e in range(cull - 4, cull + 1)]
        return cull + 1 in losses and losses[cull + 1] > EXPLOSION_FACTOR * sum(before) / len(before)

    # the stimulus is real: after some cull the loss is above the factor times the mean of the five before
    assert any(spikes(cull) for cull in culls), "no cull raised the loss enough to exercise the guard"
    assert payloads(events, "RollbackRequested") == [] and payloads(events, "RunFailed") == []
    assert payloads(events, "RunCompleted")


def test_the_guard_never_retries_an_identical_replay(tmp_path: Path) -> None:
    """A training loss that rises at epoch 11 on its own: one rollback, and its identical replay fails the
    run at once, naming why, instead of being replayed max_guard_rollbacks times."""
    config = {
        **SMALL,
        "epochs": 12,
        "learning_rate": 1.0,
        "loss_explosion_factor": 1.01,
        "loss_explosion_floor": 0.0,
    }
    store = open_store(DataDir(tmp_path).log)
    trainer = build_trainer(build_config(config), "rguard", store, DataDir(tmp_path))
    trainer.start()
    try:
        with pytest.raises(RunError, match=r"again: .*already rolled back from epoch 11 to epoch 10"):
            trainer.run()
    finally:
        store.close()
    events = run_events(tmp_path, "rguard")
    assert len(payloads(events, "RollbackCompleted")) == 1
    (failed,) = payloads(events, "RunFailed")
    assert "training is deterministic" in failed.error


# ---------------------------------------------------------------------- long default runs


@pytest.mark.slow
def test_the_default_run_of_seed_2_completes(tmp_path: Path) -> None:
    """`esper run --epochs 60 --seed 2` with every default: it never ended before the fix."""
    store = open_store(DataDir(tmp_path).log)
    trainer = build_trainer(build_config({"epochs": 60, "seed": 2}), "rseed2", store, DataDir(tmp_path))
    trainer.start()
    try:
        run_bounded(trainer, limit=120)
        assert trainer.epoch == 60
        trainer.finish()
    finally:
        store.close()
    state = fold(run_events(tmp_path, "rseed2"))
    pairs = [(r.from_epoch, r.target_epoch) for r in state.rolled_back]
    assert len(pairs) == len(set(pairs)) and state.status.value == "completed"
