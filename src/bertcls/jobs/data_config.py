"""A job's data recipe: files by absolute path, and a source run's recipe with the user's overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bertcls.config import DataConfig


def with_absolute_files(data: DataConfig) -> DataConfig:
    """Data files by absolute path, resolved from where the user stands (as MLproject `path` params are)."""
    files = {name: getattr(data, name) for name in ("train_file", "validation_file", "test_file")}
    return dataclasses.replace(data, **{k: str(Path(v).resolve()) for k, v in files.items() if v})


DATASET_FIELDS = (
    "dataset",
    "dataset_config",
    "train_file",
    "validation_file",
    "test_file",
    "text_column",
    "text_pair_column",
    "label_column",
)


def data_config_for(source: DataConfig | None, overrides: dict) -> DataConfig:
    """The source run's data recipe (same split, same seed), with whatever the user set explicitly."""
    base = source or DataConfig()
    if overrides.get("dataset") or overrides.get("train_file"):  # another dataset: inherit no columns or files
        base = dataclasses.replace(base, **{name: getattr(DataConfig(), name) for name in DATASET_FIELDS})
    return with_absolute_files(dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None}))
