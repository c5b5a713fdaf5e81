"""How a trained model reads text (length, buckets, long-text mode, windows, pairs, task, labels).

Saved inside the model directory, versioned; `evaluate` and the pyfunc model read texts by it, whatever the
run's params say.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bertcls.config import DataConfig
from bertcls.config.fields import params_of
from bertcls.errors import CheckpointError

READING_VERSION = 1


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
    task_type: str = "text"  # text: a label or score per text; ner: a tag per word (serving.tagging)
    tag_scheme: str = ""  # ner: the scheme of the training tags ("" in models saved before: decoded by argmax)
    tag_decoding: str = "viterbi"  # ner: viterbi (sequences the scheme allows) or argmax (data.tags.decode_tags)

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
        fields = {f.name: saved[f.name] for f in dataclasses.fields(cls) if f.name in saved}  # newer fields: defaults
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
