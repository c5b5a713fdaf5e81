"""What is predicted: text columns, label names <-> ids (or regression, or a tag per word), and the metric that
ranks runs."""

from __future__ import annotations

import dataclasses
import re

from bertcls.errors import ConfigError, setting

GLUE_PRIMARY_METRIC = {"cola": "mcc", "mrpc": "f1", "qqp": "f1", "stsb": "pearson"}


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A classification (label_names in id order), regression (no label names), multi-label (`multi_label`: a set
    of label_names per text) or word-tagging task (`token_level`: label_names are the tags, one per word)."""

    name: str
    label_names: tuple[str, ...]
    is_regression: bool
    primary_metric: str
    has_text_pair: bool
    token_level: bool = False
    multi_label: bool = False
    tag_scheme: str = ""  # word tagging: IOB2, IOBES, IOB1 or IO, as the training tags spell entities (data.tags)
    tag_decoding: str = "viterbi"  # word tagging: viterbi (the scheme's valid sequences) or argmax

    @property
    def kind(self) -> str:
        """What the run's `task` tag says: ner, multilabel, regression or classification."""
        if self.token_level:
            return "ner"
        return "multilabel" if self.multi_label else "regression" if self.is_regression else "classification"

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.label_names)

    def metric_names(self) -> tuple[str, ...]:
        if self.is_regression:
            return ("pearson", "spearman", "mse")
        if self.token_level:
            return ("precision", "recall", "f1", "accuracy") if self.primary_metric == "f1" else ("accuracy",)
        if self.multi_label:
            names = MULTI_LABEL_METRICS
            return (*names, *(per_class_key(m, label) for label in self.per_class_labels() for m in PER_CLASS_METRICS))
        names = ("accuracy", "macro_f1", "mcc", *(self.num_labels == 2) * ("f1",))
        return (*names, *(per_class_key(m, label) for label in self.per_class_labels() for m in PER_CLASS_METRICS))

    def per_class_labels(self) -> tuple[str, ...]:
        """The classes whose precision / recall / F1 are logged as metrics: all, up to PER_CLASS_METRICS_MAX_CLASSES
        (beyond, a run would log thousands of series; the per-class table artifact holds them)."""
        return self.label_names if len(self.label_names) <= PER_CLASS_METRICS_MAX_CLASSES else ()


MULTI_LABEL_METRICS = ("micro_f1", "macro_f1", "subset_accuracy", "average_precision")
MULTI_LABEL_PRIMARY_METRIC = "micro_f1"
PER_CLASS_METRICS = ("precision", "recall", "f1")  # logged per class as <metric>_<label>, e.g. val_recall_spam
PER_CLASS_METRICS_MAX_CLASSES = 30


def per_class_key(metric: str, label: str) -> str:
    """The metric name of one class's score: `recall_spam`; characters MLflow refuses in a name become _."""
    return f"{metric}_" + re.sub(r"[^A-Za-z0-9_\-. /]", "_", label)


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


# Whether a higher ("max") or a lower ("min") value is better, by metric name without its split prefix. A metric
# not listed is never guessed: the caller must say (register's `direction`), or metric_direction refuses.
METRIC_DIRECTIONS = {
    **dict.fromkeys(
        (
            "accuracy",
            "macro_f1",
            "micro_f1",
            "weighted_f1",
            "f1",
            "mcc",
            "precision",
            "recall",
            "pearson",
            "spearman",
            "auc",
            "roc_auc",
            "average_precision",
            "subset_accuracy",
        ),
        "max",
    ),
    **dict.fromkeys(
        ("loss", "mse", "mae", "rmse", "mlm_loss", "perplexity", "error_rate", "ece", "brier", "nll", "log_loss"), "min"
    ),
}
SPLIT_PREFIXES = ("best_val_", "best_", "val_", "validation_", "test_", "train_")


def metric_direction(metric: str, direction: str | None = None) -> str:
    """'max' or 'min' for `metric` (e.g. best_val_mcc, val_perplexity, test_error_rate), from METRIC_DIRECTIONS;
    `direction`, when given, decides instead. An unknown metric without a direction is a ConfigError."""
    if direction is not None:
        if direction not in ("max", "min"):
            raise ConfigError(f"direction must be max (higher is better) or min (lower is better), not {direction!r}.")
        return direction
    name = metric
    for prefix in SPLIT_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    for suffix in ("_uncalibrated",):  # the same measure before calibration
        name = name.removesuffix(suffix)
    name = name.removeprefix("tuned_")  # multi-label: at the thresholds tuned on validation
    if name not in METRIC_DIRECTIONS:  # one class's score, e.g. recall_spam
        name = next((m for m in PER_CLASS_METRICS if name.startswith(f"{m}_")), name)
    if name not in METRIC_DIRECTIONS:
        raise ConfigError(
            f"bertcls does not know whether a higher or a lower {metric!r} is better. Say which with "
            f"{setting('direction', 'max')} (higher is better) or {setting('direction', 'min')} (lower is better)."
        )
    return METRIC_DIRECTIONS[name]


def is_better(value: float, than: float | None, metric: str, direction: str | None = None) -> bool:
    """Whether `value` beats `than` (None: nothing yet) in `metric`'s direction; a tie is not better."""
    if than is None:
        return True
    return value > than if metric_direction(metric, direction) == "max" else value < than
