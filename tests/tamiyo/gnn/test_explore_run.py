"""`esper run --explore EPS`: the heuristic's ε recorded in RunStarted (the run's config and the controller's
own), exploring decisions that carry their observation in the log, the same ε after a resume; bad values
are one-line usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domains.tamiyo.config import HeuristicConfig
from domains.tamiyo.controller import TamiyoController
from domains.tamiyo.exploration import ExploringHeuristic
from domains.tamiyo.gnn.graph import graph_from_decision
from domains.tolaria.config import ConfigError, build_config
from eventstore import open_store
from leyline.datadir import DataDir
from ops.cli import main
from ops.compose import new_run, resume
from tests.tolaria.helpers import SMALL, payloads


def test_a_run_with_explore_records_epsilon_and_observations_and_resumes_with_them(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path)
    # 4 of 20 epochs: a run long enough that a germination there can reach its verdict (else Kasmina's
    # run_ending rule leaves the no-op as the only legal action, with probability 1)
    config = build_config({**SMALL, "controller": "tamiyo", "explore": 0.5, "epochs": 20})
    store = open_store(data_dir.log)
    try:
        trainer = new_run(store, data_dir, config, "rexplore")
        for _ in range(4):
            trainer.run_epoch()
        trainer.sink.close()
        events = list(store.read_all())
        started = payloads(events, "RunStarted")[0]
        assert json.loads(started.config_json)["explore"] == 0.5
        assert HeuristicConfig.from_json(started.controller_config_json).exploration_epsilon == 0.5
        made = payloads(events, "DecisionMade")
        assert made and all(0.0 < d.action_probability <= 1.0 for d in made)
        assert any(d.action_probability < 1.0 for d in made)
        for decision in made:
            assert decision.HasField("observation")
            graph = graph_from_decision(decision)
            # cnn-lite: three conv2d slots and a widening
            assert graph["seed"].num_nodes == len(decision.observation.topology.slots) == 4
        resumed = resume(store, data_dir, "rexplore")
        resumed.sink.close()
    finally:
        store.close()
    assert isinstance(resumed.controller, TamiyoController)
    policy = resumed.controller.policy
    assert isinstance(policy, ExploringHeuristic) and policy.config.exploration_epsilon == 0.5


def test_explore_is_off_by_default_and_for_the_heuristic_only() -> None:
    assert build_config({}).explore == 0.0
    with pytest.raises(ConfigError, match="between 0 and 1"):
        build_config({"explore": 1.5})
    for controller in ("noop", "gnn"):
        with pytest.raises(ConfigError, match="heuristic controller"):
            build_config({"explore": 0.1, "controller": controller})


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--explore", "-0.5"], "explore must be between 0 and 1"),
        (["--explore", "0.2", "--controller", "noop"], "explore applies"),
    ],
)
def test_a_bad_explore_is_a_one_line_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    assert main(["run", "--data-dir", str(tmp_path / "d"), *arguments]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "d").exists()


def test_the_help_of_esper_run_explains_explore(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "--explore EPS" in capsys.readouterr().out
