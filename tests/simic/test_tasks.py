"""The task distribution file: the bundled default parses; held-out overlap and bad keys are refused."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from domains.simic.tasks import DEFAULT_TASKS, TaskError, parse_tasks


def default() -> dict[str, Any]:
    return tomllib.loads(DEFAULT_TASKS.read_text(encoding="utf-8"))


def test_the_default_distribution_keeps_held_out_tasks_and_seeds_apart() -> None:
    tasks = parse_tasks(default())
    train_keys = {t.key for t in tasks.train.tasks}
    held = tasks.held_out.all_episodes()
    assert len({e.seed for e in held}) >= 5
    assert all(e.task.key not in train_keys for e in held)
    episodes = [tasks.train.training_episode(0, r, k, 4) for r in range(50) for k in range(4)]
    assert all(tasks.train.seeds[0] <= e.seed < tasks.train.seeds[1] for e in episodes)
    assert {e.task.key for e in episodes} == {t.key for t in tasks.train.tasks}
    assert episodes[0].run_config("tamiyo")["dataset_options"] == {"train_limit": 600}


def test_overlapping_seeds_or_tasks_are_refused() -> None:
    document = default()
    document["held_out"]["seeds"] = [99_990, 100_010]
    with pytest.raises(TaskError, match="overlap the training seeds"):
        parse_tasks(document)
    document = default()
    document["held_out"]["tasks"] = [document["train"]["tasks"][0]]
    with pytest.raises(TaskError, match="also training tasks"):
        parse_tasks(document)


def test_malformed_documents_are_refused_with_what_to_fix() -> None:
    document = default()
    document["held_out"]["seeds"] = [900_000, 900_003]
    with pytest.raises(TaskError, match="at least 5 seeds"):
        parse_tasks(document)
    document = default()
    document["train"]["tasks"][0]["hots"] = "cnn-lite"
    with pytest.raises(TaskError, match="unknown key"):
        parse_tasks(document)
    with pytest.raises(TaskError, match="missing section"):
        parse_tasks({"train": default()["train"]})
