"""The configuration of a training run: embedded defaults, a JSON or TOML file, command-line overrides.

Every key is known: an unknown key is a ConfigError naming it and the keys that exist. `host` and
`dataset` name a built-in ("cnn-lite", "transformer-lite"; "digits", "fashion-mnist[:DIR]",
"mnist:DIR", "austen", "synthetic-images", "synthetic-sequences") or a `module:factory` entry of the
user's own (see hosts.py and data.py for what the factory receives and returns).
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leyline.controller import CONTROLLER_TIMINGS, DEFAULT_HOOK_BUDGET_MS, TIMING_MEASURED
from leyline.schedule import LR_SCHEDULES

# A rank of a data-parallel run that stops taking part fails the run within 10 s (issue 18)
DEFAULT_RANK_TIMEOUT_S = 8.0

CONTROLLERS = ("tamiyo", "noop", "gnn")  # gnn takes an optional ":VERSION"
SEED_LIMIT = 2**64  # torch.manual_seed takes 64 bits
INT_LIMIT = 2**63  # every other integer key: what a signed 64-bit counter holds


class ConfigError(ValueError):
    """A configuration the user must fix; the message says what and how."""


@dataclass(frozen=True)
class RunConfig:
    # 20: the default run (digits) shows whole lifecycles in seconds: grafts at epochs ~2-4, the first seeds
    # FOSSILIZED by epoch ~14-16. Test accuracy, seeds 0/1/2, grown vs no-op at 20 epochs: 0.975/0.978/0.950
    # vs 0.972/0.939/0.950; grown at 30 epochs: 0.986/0.972/0.972, for ~3 s more CPU (--epochs 30).
    epochs: int = 20
    seed: int = 0
    host: str = "cnn-lite"
    host_options: Mapping[str, Any] = field(default_factory=dict)
    dataset: str = "digits"
    dataset_options: Mapping[str, Any] = field(default_factory=dict)
    controller: str = "tamiyo"  # "tamiyo" (grows the host) or "noop" (never acts: a run without growth)
    explore: float = 0.0  # ε of the heuristic's exploration over legal actions (controller tamiyo only)
    batch_size: int = 64
    # Training examples per epoch, drawn afresh from the whole training split each epoch (data.epoch_order);
    # 0: every example once. Epochs are the lifecycle's clock (boundaries, gates), so this sets how often
    # the controller decides without shrinking the data the run learns from, as train_limit does.
    epoch_examples: int = 0
    learning_rate: float = 0.01
    # The learning rate's schedule over the run's epochs (leyline.schedule): "constant" or "cosine". Every
    # seed's optimizer group follows the same rule over the epochs from its start of training to the end.
    lr_schedule: str = "constant"
    weight_decay: float = 0.0
    checkpoint_every: int = 1  # epochs between checkpoints
    hook_budget_ms: float = DEFAULT_HOOK_BUDGET_MS
    controller_timing: str = TIMING_MEASURED  # what the controller is told of the hook's cost (leyline)
    loss_explosion_factor: float = 15.0  # training loss above this × the recent mean is an explosion
    # ... and above this many nats: a relative rise of a near-zero loss is noise, not an explosion. An
    # 80-epoch digits run that fits its training set to ~0.002 nats has epochs at 0.07–0.13 (35–67×, no harm
    # done); 0.25 nats is about a tenth of chance on 10 classes (ln 10 = 2.3), far below what a diverging
    # run reaches. A non-finite loss always counts.
    loss_explosion_floor: float = 0.25
    loss_window: int = 5  # epochs in the recent mean
    fast_rollback_cache: int = 5  # checkpoints kept in memory for fast rollback
    max_guard_rollbacks: int = 3  # consecutive explosion rollbacks before the run fails
    device: str = "cpu"
    threads: int = 1  # torch intra-op threads; the same count keeps CPU runs bit-identical

    def __post_init__(self) -> None:
        positive = (
            "epochs",
            "batch_size",
            "checkpoint_every",
            "loss_window",
            "fast_rollback_cache",
            "threads",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.seed < SEED_LIMIT:
            raise ConfigError(f"seed must be between 0 and 2**64 - 1 (torch's seed range), got {self.seed}")
        for f in dataclasses.fields(self):
            if f.type == "int" and getattr(self, f.name) >= INT_LIMIT and f.name != "seed":
                raise ConfigError(f"{f.name} must be below 2**63, got {getattr(self, f.name)}")
        if self.epoch_examples < 0:
            raise ConfigError(
                f"epoch_examples must be 0 (the whole split) or positive, got {self.epoch_examples}"
            )
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(
                f"unknown lr_schedule {self.lr_schedule!r}; use one of {', '.join(LR_SCHEDULES)}"
            )
        if self.hook_budget_ms <= 0 or self.loss_explosion_factor <= 1:
            raise ConfigError("hook_budget_ms must be positive and loss_explosion_factor above 1")
        if not 0.0 <= self.loss_explosion_floor < float("inf"):
            raise ConfigError(
                f"loss_explosion_floor must be a non-negative number of nats, got {self.loss_explosion_floor}"
            )
        if self.controller_timing not in CONTROLLER_TIMINGS:
            raise ConfigError(
                f"controller_timing must be one of {', '.join(CONTROLLER_TIMINGS)}, "
                f"got {self.controller_timing!r}"
            )
        if self.max_guard_rollbacks < 0:
            raise ConfigError(f"max_guard_rollbacks must be non-negative, got {self.max_guard_rollbacks}")
        if self.controller.partition(":")[0] not in CONTROLLERS:
            raise ConfigError(f"unknown controller {self.controller!r}; use one of {', '.join(CONTROLLERS)}")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError(f"device must be cpu or cuda[:N], got {self.device!r}")
        if not 0.0 <= self.explore <= 1.0:
            raise ConfigError(f"explore must be between 0 and 1, got {self.explore}")
        if self.explore > 0 and self.controller != "tamiyo":
            raise ConfigError(
                f"explore applies to the heuristic controller (tamiyo), not {self.controller!r}"
            )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, default=dict)


KNOWN_KEYS = tuple(f.name for f in dataclasses.fields(RunConfig))


def build_config(values: Mapping[str, Any]) -> RunConfig:
    """A RunConfig from a mapping of keys, with the embedded defaults for what is absent."""
    unknown = sorted(set(values) - set(KNOWN_KEYS))
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(unknown)}; known keys: {', '.join(KNOWN_KEYS)}")
    types = {f.name: f.type for f in dataclasses.fields(RunConfig)}
    checked: dict[str, Any] = {}
    for key, value in values.items():
        expected = types[key]
        if expected == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"config key {key} must be an integer, got {value!r}")
        if expected == "float" and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ConfigError(f"config key {key} must be a number, got {value!r}")
        if expected == "str" and not isinstance(value, str):
            raise ConfigError(f"config key {key} must be a string, got {value!r}")
        if expected.startswith("Mapping") and not isinstance(value, Mapping):
            raise ConfigError(f"config key {key} must be a table/object, got {value!r}")
        checked[key] = float(value) if expected == "float" else value
    return RunConfig(**checked)


def load_config_file(path: Path) -> dict[str, Any]:
    """The keys of a .json or .toml config file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    try:
        document = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid {path.suffix[1:] or 'JSON'}: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"config file {path} must hold an object of keys")
    return document
