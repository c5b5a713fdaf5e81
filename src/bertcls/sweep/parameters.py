"""The swept parameters, read from a sweep's lists (a grid) and ranges (a TPE search) into a `SearchSpace`; the
train config of one trial; the study's name. Pure: no Optuna beyond the trial object handed in, no mlflow."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from typing import Any

from bertcls.config import SWEPT, SweepConfig, TrainConfig
from bertcls.config.fields import build, flatten
from bertcls.errors import ConfigError
from bertcls.model.config import HEADS

KINDS = {
    "lr": float,
    "epochs": int,
    "weight_decay": float,
    "head": str,
    "finetune": str,
    "freeze_layers": int,
    "llrd": float,
    "seed": int,
}


RANGES = {"lr": ("lr_range", True), "weight_decay": ("weight_decay_range", False), "llrd": ("llrd_range", False)}


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Values per swept train parameter; ranges where TPE samples a number; the trial budget."""

    choices: dict[str, tuple]  # parameter -> its values (a grid dimension, or a TPE categorical)
    ranges: dict[str, tuple[float, float, bool]]  # parameter -> (low, high, log)
    trials: int  # 0: the grid

    @property
    def is_grid(self) -> bool:
        return self.trials == 0

    @property
    def budget(self) -> int:
        """Trials to run: every grid point, or N."""
        if not self.is_grid:
            return self.trials
        size = 1
        for values in self.choices.values():
            size *= len(values)
        return size

    def grid(self) -> list[dict[str, Any]]:
        names = list(self.choices)
        return [dict(zip(names, point, strict=True)) for point in itertools.product(*self.choices.values())]

    def suggest(self, trial) -> dict[str, Any]:
        """This trial's values: every grid dimension, TPE's picks, the fixed single values."""
        values = {}
        for name, options in self.choices.items():
            values[name] = (
                trial.suggest_categorical(name, list(options)) if len(options) > 1 or self.is_grid else options[0]
            )
        for name, (low, high, log) in self.ranges.items():
            values[name] = trial.suggest_float(name, low, high, log=log)
        return values

    def describe(self) -> dict[str, Any]:
        return {
            "choices": {k: list(v) for k, v in self.choices.items()},
            "ranges": {k: list(v) for k, v in self.ranges.items()},
            "trials": self.trials,
        }


def _parse_list(param: str, text: str) -> tuple:
    kind = KINDS[param]
    values = []
    for word in text.split():
        try:
            number = float(word) if kind in (int, float) else None
        except ValueError:
            raise ConfigError(
                f"{SWEPT[param]}={text!r}: {word!r} is not a number. Give space-separated values, "
                f"e.g. {SWEPT[param]}='2e-5 5e-5'."
            ) from None
        if kind is int and not number.is_integer():
            raise ConfigError(f"{SWEPT[param]}={text!r}: {word!r} is not a whole number.")
        values.append(int(number) if kind is int else number if kind is float else word)
    if len(set(values)) != len(values):
        raise ConfigError(f"{SWEPT[param]}={text!r} repeats a value; list each value once.")
    return tuple(values)


def _parse_range(param: str, text: str, log: bool) -> tuple[float, float, bool]:
    name = RANGES[param][0]
    words = text.split()
    try:
        low, high = (float(w) for w in words)
    except ValueError:
        raise ConfigError(f"{name}={text!r}: give two numbers 'low high', e.g. {name}='1e-5 2e-4'.") from None
    if low > high:
        raise ConfigError(f"{name}={text!r}: low {low:g} is above high {high:g}. Give 'low high' in that order.")
    if log and low <= 0:
        raise ConfigError(f"{name}={text!r} is searched on a log scale: both ends must be > 0.")
    return low, high, log


def search_space(sweep: SweepConfig) -> SearchSpace:
    """The lists and ranges of a sweep, checked; refuses a sweep that varies nothing."""
    choices = {p: _parse_list(p, getattr(sweep, plural)) for p, plural in SWEPT.items() if getattr(sweep, plural)}
    ranges = {}
    for param, (name, log) in RANGES.items():
        if getattr(sweep, name):
            if param in choices:
                raise ConfigError(f"{param} is given both as a list ({SWEPT[param]}) and as {name}; give one.")
            ranges[param] = _parse_range(param, getattr(sweep, name), log)
    for head in choices.get("head", ()):
        if head not in HEADS:
            raise ConfigError(f"heads: unknown head {head!r}; choose among {', '.join(HEADS)}.")
    space = SearchSpace(choices, ranges, sweep.trials)
    if space.is_grid and space.budget < 2:
        raise ConfigError(
            "The grid is empty: no list has two or more values, so the sweep would train one setting. Give lists "
            "(lrs='2e-5 3e-5 5e-5', epochs='3 5', ...), or trials=N with ranges for a TPE search; for one run "
            "use `train`."
        )
    return space


def trial_config(base: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    """The base train config with a trial's values (a ConfigError if the combination is invalid)."""
    return build(TrainConfig, {**flatten(base), **values})


def check_grid(base: TrainConfig, space: SearchSpace) -> None:
    """Every grid point must make a valid train config; refuse the sweep up front, naming the bad points."""
    if not space.is_grid:
        return
    bad = []
    for point in space.grid():
        try:
            trial_config(base, point)
        except ConfigError as err:
            bad.append(f"{point}: {err}")
    if bad:
        raise ConfigError(
            f"{len(bad)} of {space.budget} grid points are not valid train settings, e.g. {bad[0]} "
            "Narrow the lists so that every combination is valid."
        )


def study_name(base: TrainConfig, space: SearchSpace, metric: str) -> str:
    """A name from the sweep's definition: the same sweep, re-run, continues its study."""
    definition = json.dumps(
        {"base": flatten(base), "space": space.describe(), "metric": metric}, sort_keys=True, default=str
    )
    return "bertcls-" + hashlib.sha256(definition.encode()).hexdigest()[:12]
