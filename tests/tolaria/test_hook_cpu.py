"""The controller reacts to what the end-of-epoch hook cost the training thread, not to how long the machine
took to run it: a hook that waits (another process holds the core) is still reported as an overrun to the
operator, but does not change the controller's mode; a hook that burns the CPU does."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from domains.tolaria.config import build_config
from eventstore import open_store
from leyline import pb
from leyline.controller import (
    TIMING_MEASURED,
    TIMING_NONE,
    ControllerContext,
    ControllerOutput,
    NoOpController,
)
from leyline.datadir import DataDir
from ops.compose import new_run
from tests.tolaria.helpers import SMALL, payloads, run_events

BUDGET_MS = 5.0
SLOW_EPOCH = 3


class SlowAtEpoch(NoOpController):
    """Spends 4× the hook budget inside its decision at one epoch: asleep (wall only) or busy (CPU)."""

    def __init__(self, busy: bool) -> None:
        self.busy = busy
        self.reasons: list[tuple[int, str]] = []
        self.contexts: list[ControllerContext] = []

    def decide(self, packet: pb.SystemStatePacket, context: ControllerContext) -> ControllerOutput:
        self.contexts.append(context)
        if packet.epoch == SLOW_EPOCH:
            seconds = 4 * BUDGET_MS / 1000
            if self.busy:
                until = time.thread_time() + seconds
                while time.thread_time() < until:
                    pass
            else:
                time.sleep(seconds)
        return ControllerOutput()

    def enter_conservative_mode(self, reason: str, epoch: int) -> list[pb.EventEnvelope]:
        self.reasons.append((epoch, reason))
        return []

    def state_dict(self) -> Mapping[str, Any]:
        return {}


def run_with(
    tmp_path: Path, controller: SlowAtEpoch, timing: str = TIMING_MEASURED
) -> list[pb.EventEnvelope]:
    store = open_store(DataDir(tmp_path).log)
    try:
        config = build_config({**SMALL, "hook_budget_ms": BUDGET_MS, "controller_timing": timing})
        new_run(store, DataDir(tmp_path), config, "rhook", controller=controller).run()
    finally:
        store.close()
    return run_events(tmp_path, "rhook")


def overrun_epochs(events: list[pb.EventEnvelope]) -> set[int]:
    return {hook.epoch for hook in payloads(events, "EpochHookOverrun")}


def test_a_hook_that_waits_is_an_overrun_for_the_operator_but_not_for_the_controller(tmp_path: Path) -> None:
    controller = SlowAtEpoch(busy=False)
    events = run_with(tmp_path, controller)
    assert SLOW_EPOCH in overrun_epochs(events)
    assert all(epoch != SLOW_EPOCH for epoch, _ in controller.reasons)
    after = next(c for c in controller.contexts if c.epoch == SLOW_EPOCH + 1)
    assert after.last_hook_ms < 4 * BUDGET_MS


def test_a_hook_that_burns_its_budget_in_cpu_puts_the_controller_in_conservative_mode(tmp_path: Path) -> None:
    controller = SlowAtEpoch(busy=True)
    events = run_with(tmp_path, controller)
    assert SLOW_EPOCH in overrun_epochs(events)
    (reason,) = [reason for epoch, reason in controller.reasons if epoch == SLOW_EPOCH]
    assert "of CPU" in reason
    after = next(c for c in controller.contexts if c.epoch == SLOW_EPOCH + 1)
    assert after.last_hook_ms >= 4 * BUDGET_MS


def test_a_run_without_controller_timing_tells_the_controller_nothing_of_its_hooks(tmp_path: Path) -> None:
    """Simic's episodes: the operator still sees the overrun; the controller's inputs are the machine's
    load-free ones (0 ms, never conservative mode), so its decisions do not vary with the load."""
    controller = SlowAtEpoch(busy=True)
    events = run_with(tmp_path, controller, TIMING_NONE)
    assert SLOW_EPOCH in overrun_epochs(events)
    assert controller.reasons == []
    assert {c.last_hook_ms for c in controller.contexts} == {0.0}
