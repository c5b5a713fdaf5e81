"""Typed settings that travel with a run and a model, so later jobs never re-parse MLflow's string params.

- `ReadingSettings`: how a trained model reads text (length, buckets, long-text mode, windows, pairs,
  task, labels); saved inside the model directory, versioned; `evaluate` and the pyfunc model read texts
  by it, whatever the run's params say.
- The resolved `TrainConfig` as JSON: logged as an artifact of every training run; `evaluate` and
  `register` rebuild the run's data recipe from it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bertcls.config import DataConfig, OptimConfig, TrainConfig
from bertcls.config.fields import params_of
from bertcls.config.jobs import job_params
from bertcls.errors import CheckpointError

READING_VERSION = 1
TRAIN_CONFIG_VERSION = 1
TRAIN_CONFIG_ARTIFACT = "bertcls/train_config.json"  # inside the run's artifacts


@dataclasses.dataclass(frozen=True)
class ReadingSettings:
    """How a trained model turns texts into rows and outputs into answers."""

    task: str  # "classification" or "regression"
    label_names: tuple[str, ...]  # empty for regression
    primary_metric: str
    max_seq_length: int
    buckets: tuple[int, ...]  # padded lengths the model was compiled for
    has_text_pair: bool
    long_text: str  # "truncate" or "windows"
    window_overlap: int
    max_windows: int

    @property
    def windows(self) -> tuple[int, int] | None:
        """(overlap, max windows) when long texts are read as windows, else None."""
        return (self.window_overlap, self.max_windows) if self.long_text == "windows" else None

    def data_fields(self) -> dict[str, Any]:
        """The DataConfig fields a trained model fixes (those marked `reading`), as it was trained."""
        return {p.name: getattr(self, p.name) for p in params_of(DataConfig) if p.reading}

    def to_dict(self) -> dict[str, Any]:
        return {"version": READING_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> ReadingSettings:
        if saved.get("version", 0) > READING_VERSION:
            raise CheckpointError(
                f"The model's reading settings are version {saved['version']}, newer than this bertcls reads "
                f"({READING_VERSION}). Upgrade bertcls to load it."
            )
        fields = {f.name: saved[f.name] for f in dataclasses.fields(cls)}
        return cls(**{**fields, "label_names": tuple(fields["label_names"]), "buckets": tuple(fields["buckets"])})

    @classmethod
    def from_model_meta(cls, meta: dict[str, Any]) -> ReadingSettings:
        """From a saved model's metadata: the versioned object, or the loose keys of models saved before it."""
        if "reading_settings" in meta:
            return cls.from_dict(meta["reading_settings"])
        labels = tuple(meta.get("label_names") or ())
        max_seq_length = int(meta.get("max_seq_length") or DataConfig.max_seq_length)
        return cls(
            task=meta.get("task") or ("classification" if labels else "regression"),
            label_names=labels,
            primary_metric=meta.get("primary_metric") or ("accuracy" if labels else "pearson"),
            max_seq_length=max_seq_length,
            buckets=tuple(meta.get("buckets") or (max_seq_length,)),
            has_text_pair=bool(meta.get("has_text_pair", False)),
            long_text=meta.get("long_text") or DataConfig.long_text,
            window_overlap=int(meta.get("window_overlap") or DataConfig.window_overlap),
            max_windows=int(meta.get("max_windows") or DataConfig.max_windows),
        )


def train_config_to_dict(config: TrainConfig) -> dict[str, Any]:
    return {"version": TRAIN_CONFIG_VERSION, "config": dataclasses.asdict(config)}


def train_config_from_dict(saved: dict[str, Any]) -> TrainConfig:
    """Inverse of train_config_to_dict; fields a newer bertcls added are ignored, missing ones default."""
    if saved.get("version", 0) > TRAIN_CONFIG_VERSION:
        raise CheckpointError(
            f"The run's train config is version {saved['version']}, newer than this bertcls reads "
            f"({TRAIN_CONFIG_VERSION}). Upgrade bertcls to read it."
        )
    fields = dict(saved["config"])

    def known(cls: type, values: dict[str, Any]) -> dict[str, Any]:
        names = {f.name for f in dataclasses.fields(cls)}
        return {k: v for k, v in values.items() if k in names}

    data = DataConfig(**known(DataConfig, fields.pop("data", {})))
    optim = OptimConfig(**known(OptimConfig, fields.pop("optim", {})))
    fields.setdefault("precision", _precision_of(fields.pop("compute_dtype", None)))
    return TrainConfig(**known(TrainConfig, fields), data=data, optim=optim)


def _precision_of(compute_dtype: str | None) -> str:
    """`precision` for a run logged when it was `compute_dtype` (float32 / bfloat16)."""
    from bertcls.config import PRECISION_DTYPES

    return {dtype: name for name, dtype in PRECISION_DTYPES.items()}.get(compute_dtype or "float32", "fp32")


def train_config_from_params(params: dict[str, str]) -> TrainConfig:
    """For runs logged before the config artifact: MLflow's string params, parsed by their definitions.

    A value that no longer parses (a renamed choice, say) falls back to the default; reading settings that
    do not fit together are dropped (a trained model carries its own, which win anyway).
    """
    from bertcls.config.fields import build
    from bertcls.errors import ConfigError

    values, reading = {}, set()
    if "compute_dtype" in params and "precision" not in params:  # logged before the rename
        values["precision"] = _precision_of(params["compute_dtype"])
    for param in job_params("train"):
        if param.name in params and param.mlproject:
            try:
                values[param.name] = param.parse(params[param.name])
            except ValueError:
                continue
            if param.reading:
                reading.add(param.name)
    try:
        return build(TrainConfig, values)
    except ConfigError:
        return build(TrainConfig, {k: v for k, v in values.items() if k not in reading})
