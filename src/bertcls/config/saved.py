"""The resolved `TrainConfig` as versioned JSON, logged with every training run, so later jobs (evaluate,
register, resume) rebuild its recipe without re-parsing MLflow's string params.

How a trained model reads text travels inside the model instead: `bertcls.data.reading`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bertcls.config import DataConfig, OptimConfig, TrainConfig
from bertcls.config.jobs import job_params
from bertcls.errors import CheckpointError

TRAIN_CONFIG_VERSION = 1
TRAIN_CONFIG_ARTIFACT = "bertcls/train_config.json"  # inside the run's artifacts


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
