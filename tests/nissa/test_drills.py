"""`esper drill`: each drill's short real run shows the fault, the alert of record, the Prometheus rule's
expression true on the run's metrics, the recovery and the return to nominal."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.commands.drill import EXPLOSION_AFTER_EPOCH, STALLED_EPOCHS, run_drill
from ops.drill_redis import KILL_AFTER_EPOCH, RESTART_AFTER_EPOCH

pytestmark = pytest.mark.slow


def test_controller_timeout_drill(tmp_path: Path) -> None:
    report = run_drill("controller-timeout", tmp_path)
    assert report["fault"]["decisions_timed_out_at_epochs"] == list(range(1, STALLED_EPOCHS + 1))
    assert set(range(1, STALLED_EPOCHS + 1)) <= set(report["fault"]["hook_overruns_at_epochs"])
    assert report["alert_of_record"]["fired_position"] is not None
    assert report["alert_of_record"]["resolved_position"] is not None
    assert report["prometheus"]["promtool_passed"], report["prometheus"]["promtool_output"]
    assert report["recovered"] and report["passed"]


def test_compile_failure_drill(tmp_path: Path) -> None:
    report = run_drill("compile-failure", tmp_path)
    assert report["fault"]["retried"] >= 4
    alert = report["alert_of_record"]
    # resolved within the drill, on the compile that succeeded after the retries
    assert alert["fired_position"] is not None and alert["resolved_position"] is not None
    assert alert["resolved_position"] > alert["fired_position"]
    assert (
        report["prometheus"]["expression_false_at_minutes"][0]
        > report["prometheus"]["expression_true_at_minutes"][0]
    )
    assert report["prometheus"]["promtool_passed"], report["prometheus"]["promtool_output"]
    assert report["recovered"] and report["passed"]


def test_loss_explosion_drill(tmp_path: Path) -> None:
    report = run_drill("loss-explosion", tmp_path)
    assert report["fault"]["learning_rate_spiked_after_epoch"] == [EXPLOSION_AFTER_EPOCH]
    assert report["fault"]["rollbacks_requested"][0].startswith("loss explosion")
    alert = report["alert_of_record"]
    assert alert["fired_at_epoch"] == EXPLOSION_AFTER_EPOCH + 1
    assert alert["resolved_at_epoch"] is not None and alert["resolved_at_epoch"] > alert["fired_at_epoch"]
    assert report["prometheus"]["promtool_passed"], report["prometheus"]["promtool_output"]
    assert report["recovered"] and report["passed"]


def test_isolation_drill(tmp_path: Path) -> None:
    report = run_drill("isolation", tmp_path)
    assert len(report["fault"]["violations"]) >= 3
    alert = report["alert_of_record"]
    assert alert["fired_at_epoch"] is not None and alert["resolved_at_epoch"] is not None
    assert report["prometheus"]["promtool_passed"], report["prometheus"]["promtool_output"]
    assert report["recovered"] and report["passed"]


def test_disk_full_drill(tmp_path: Path) -> None:
    report = run_drill("disk-full", tmp_path)
    assert report["fault"]["retried"] >= 4
    assert all("No space left on device" in error for error in report["fault"]["errors"])
    alert = report["alert_of_record"]
    # resolved within the drill, on the compile that succeeded after the retries
    assert alert["fired_position"] is not None and alert["resolved_position"] is not None
    assert alert["resolved_position"] > alert["fired_position"]
    assert (
        report["prometheus"]["expression_false_at_minutes"][0]
        > report["prometheus"]["expression_true_at_minutes"][0]
    )
    assert report["prometheus"]["promtool_passed"], report["prometheus"]["promtool_output"]
    assert report["recovered"] and report["passed"]


@pytest.mark.redis
def test_redis_loss_drill(tmp_path: Path) -> None:
    report = run_drill("redis-loss", tmp_path)
    assert report["fault"]["mirror_health_in_log"] == ["down", "healthy"]
    assert report["training_during_outage"] == list(range(KILL_AFTER_EPOCH + 1, RESTART_AFTER_EPOCH + 1))
    alert = report["alert_of_record"]
    assert alert["fired_position"] is not None and alert["resolved_position"] is not None
    assert alert["resolved_position"] > alert["fired_position"]
    assert report["prometheus"]["promtool_passed"], report["prometheus"]["promtool_output"]
    mirror = report["mirror"]
    assert mirror["reseeds"] >= 1 and mirror["error"] is None
    assert mirror["entries_in_redis"] == mirror["events_in_log"]
    assert mirror["missing"] == mirror["duplicated"] == mirror["mismatched"] == 0
    assert report["recovered"] and report["passed"]
