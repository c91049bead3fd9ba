"""The task distribution Simic trains and validates on: which runs an episode is (host, data set, seed,
epoch budget), from a TOML document (the bundled default is `tasks.toml` beside this module).

    [train]                       # the episodes of `esper policy train`
    epochs = 6                    # each episode's epoch budget
    seeds = [0, 100000]           # half-open range the episodes' run seeds are drawn from
    [[train.tasks]]               # one or more: a host and a data set, with their options
    host = "cnn-lite"
    host_options = {}
    dataset = "digits"
    dataset_options = { train_limit = 600 }

    [held_out]                    # the validation gate's and the benchmark's tasks (same keys)
    ...

Held out means never used in training: the held-out seed range is disjoint from the training one, and no
held-out task (host and data set with their options) is a training task. Episode k of round r takes
training task (r·episodes + k) mod |tasks| and a seed drawn from the range by (base seed, r, k); held-out
task i is every held-out task with every seed of its range, in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leyline.controller import TIMING_NONE

DEFAULT_TASKS = Path(__file__).with_name("tasks.toml")
SECTIONS = ("train", "held_out")
TASK_KEYS = frozenset({"host", "host_options", "dataset", "dataset_options"})
SET_KEYS = frozenset({"epochs", "seeds", "tasks"})
MIN_HELD_OUT_SEEDS = 5  # the validation gate compares policies over at least this many seeds


class TaskError(ValueError):
    """A task document the user must fix; the message says what."""


@dataclass(frozen=True)
class Task:
    host: str
    dataset: str
    host_options: Mapping[str, Any] = field(default_factory=dict)
    dataset_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (
            self.host,
            repr(sorted(self.host_options.items())),
            self.dataset,
            repr(sorted(self.dataset_options.items())),
        )

    @property
    def label(self) -> str:
        options = ",".join(
            f"{k}={v}" for k, v in sorted({**self.host_options, **self.dataset_options}.items())
        )
        return f"{self.host}/{self.dataset}" + (f"[{options}]" if options else "")


@dataclass(frozen=True)
class Episode:
    """One run to make: the keys of its RunConfig except the controller."""

    task: Task
    seed: int
    epochs: int

    def run_config(self, controller: str) -> dict[str, Any]:
        return {
            "controller": controller,
            "host": self.task.host,
            "host_options": dict(self.task.host_options),
            "dataset": self.task.dataset,
            "dataset_options": dict(self.task.dataset_options),
            "seed": self.seed,
            "epochs": self.epochs,
            # the hook's cost is the machine's, not the policy's: decisions must not vary with the load
            "controller_timing": TIMING_NONE,
        }


@dataclass(frozen=True)
class TaskSet:
    tasks: tuple[Task, ...]
    seeds: tuple[int, int]  # [low, high)
    epochs: int

    def training_episode(self, base_seed: int, round_: int, k: int, per_round: int) -> Episode:
        low, high = self.seeds
        mixed = (base_seed * 1_000_003 + round_ * 1000 + k) % (high - low)
        return Episode(self.tasks[(round_ * per_round + k) % len(self.tasks)], low + mixed, self.epochs)

    def all_episodes(self, seeds: int | None = None) -> list[Episode]:
        """Every task with every seed of the range (the first `seeds` of it when given)."""
        low, high = self.seeds
        count = high - low if seeds is None else min(seeds, high - low)
        return [Episode(task, low + s, self.epochs) for task in self.tasks for s in range(count)]


@dataclass(frozen=True)
class TaskDistribution:
    train: TaskSet
    held_out: TaskSet

    def with_epochs(self, epochs: int) -> TaskDistribution:
        return TaskDistribution(
            TaskSet(self.train.tasks, self.train.seeds, epochs),
            TaskSet(self.held_out.tasks, self.held_out.seeds, epochs),
        )


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise TaskError(f"{where} must be a table, got {value!r}")
    return dict(value)


def _task(value: Any, where: str) -> Task:
    entry = _mapping(value, where)
    unknown = sorted(set(entry) - TASK_KEYS)
    if unknown:
        raise TaskError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(TASK_KEYS))}"
        )
    for key in ("host", "dataset"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise TaskError(f"{where}: {key} must be a non-empty string")
    return Task(
        entry["host"],
        entry["dataset"],
        _mapping(entry.get("host_options", {}), f"{where}.host_options"),
        _mapping(entry.get("dataset_options", {}), f"{where}.dataset_options"),
    )


def _task_set(value: Any, section: str) -> TaskSet:
    entry = _mapping(value, section)
    unknown = sorted(set(entry) - SET_KEYS)
    missing = sorted(SET_KEYS - set(entry))
    if unknown or missing:
        raise TaskError(
            f"[{section}]: unknown key(s) {unknown}, missing key(s) {missing}; keys: epochs, seeds, tasks"
        )
    epochs, seeds, tasks = entry["epochs"], entry["seeds"], entry["tasks"]
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise TaskError(f"[{section}] epochs must be a positive integer, got {epochs!r}")
    if (
        not isinstance(seeds, list)
        or len(seeds) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
        or not 0 <= seeds[0] < seeds[1]
    ):
        raise TaskError(
            f"[{section}] seeds must be a range [low, high) of integers, 0 <= low < high; got {seeds!r}"
        )
    if not isinstance(tasks, list) or not tasks:
        raise TaskError(f"[{section}] needs at least one [[{section}.tasks]] entry")
    return TaskSet(
        tuple(_task(t, f"[[{section}.tasks]] #{i + 1}") for i, t in enumerate(tasks)),
        (seeds[0], seeds[1]),
        epochs,
    )


def parse_tasks(document: Mapping[str, Any]) -> TaskDistribution:
    """The distribution a TOML document describes; TaskError when it is malformed or the held-out tasks
    overlap the training ones (a seed in both ranges, or the same task in both sections)."""
    unknown = sorted(set(document) - set(SECTIONS))
    missing = sorted(set(SECTIONS) - set(document))
    if unknown or missing:
        raise TaskError(
            f"task file: unknown section(s) {unknown}, missing section(s) {missing}; "
            "need [train] and [held_out]"
        )
    train, held_out = _task_set(document["train"], "train"), _task_set(document["held_out"], "held_out")
    if train.seeds[0] < held_out.seeds[1] and held_out.seeds[0] < train.seeds[1]:
        raise TaskError(
            f"held-out seeds {list(held_out.seeds)} overlap the training seeds {list(train.seeds)}"
        )
    shared = {t.key for t in train.tasks} & {t.key for t in held_out.tasks}
    if shared:
        names = sorted(t.label for t in held_out.tasks if t.key in shared)
        raise TaskError(f"held-out task(s) {', '.join(names)} are also training tasks")
    if held_out.seeds[1] - held_out.seeds[0] < MIN_HELD_OUT_SEEDS:
        raise TaskError(f"[held_out] needs at least {MIN_HELD_OUT_SEEDS} seeds, got {list(held_out.seeds)}")
    return TaskDistribution(train, held_out)
