"""What is predicted: text columns, label names <-> ids (or regression), and the metric that ranks runs."""

from __future__ import annotations

import dataclasses

GLUE_PRIMARY_METRIC = {"cola": "mcc", "mrpc": "f1", "qqp": "f1", "stsb": "pearson"}


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A classification (label_names in id order) or regression (no label names) task."""

    name: str
    label_names: tuple[str, ...]
    is_regression: bool
    primary_metric: str
    has_text_pair: bool

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.label_names)

    def metric_names(self) -> tuple[str, ...]:
        if self.is_regression:
            return ("pearson", "spearman", "mse")
        names = ("accuracy", "macro_f1", "mcc")
        return (*names, "f1") if self.num_labels == 2 else names


def label_name(value) -> str:
    """A class label's name; whole-number floats read as ints (pandas reads an int column with a gap as floats)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def primary_metric_for(glue_task: str | None, is_regression: bool) -> str:
    """GLUE's own metric per task; accuracy for other classification, Pearson for regression."""
    if glue_task:
        return GLUE_PRIMARY_METRIC.get(glue_task, "accuracy")
    return "pearson" if is_regression else "accuracy"


def metric_direction(metric: str) -> str:
    """'min' for losses and errors, 'max' for everything else."""
    return "min" if metric.endswith(("loss", "mse")) else "max"
