"""Task metrics with scikit-learn / scipy, over real rows only (padding rows carry weight 0).

Classification: accuracy, macro_f1, mcc, binary f1 (positive class = label id 1) for two classes, and each class's
precision / recall / f1 (`recall_<label>`).
Regression: pearson, spearman, mse. `evaluate` modules are optional extras (see `extra_metric`).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats
from sklearn import metrics as skm

from bertcls.data.tasks import PER_CLASS_METRICS, TaskSpec, per_class_key
from bertcls.errors import ConfigError
from bertcls.evaluation.multilabel import (
    DEFAULT_THRESHOLD,
    binary_nll,
    decide,
    majority_set_outputs,
    multilabel_metrics,
    sigmoid_probs,
)


def _real(weights: np.ndarray, *arrays: np.ndarray) -> list[np.ndarray]:
    keep = np.asarray(weights) > 0
    return [np.asarray(a)[keep] for a in arrays]


def classification_metrics(
    predictions: np.ndarray, labels: np.ndarray, num_labels: int, names: tuple[str, ...] = ()
) -> dict[str, float]:
    """predictions, labels: [N] label ids. With the label `names`, also each class's precision, recall and F1
    (`recall_<name>`: what an imbalanced task is judged by)."""
    all_labels = list(range(num_labels))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined precision for an absent class is 0, as documented
        out = {
            "accuracy": float(skm.accuracy_score(labels, predictions)),
            "macro_f1": float(skm.f1_score(labels, predictions, labels=all_labels, average="macro", zero_division=0)),
            "mcc": float(skm.matthews_corrcoef(labels, predictions)),
        }
        if num_labels == 2:
            out["f1"] = float(skm.f1_score(labels, predictions, pos_label=1, average="binary", zero_division=0))
        if names:
            scores = skm.precision_recall_fscore_support(labels, predictions, labels=all_labels, zero_division=0)
            for metric, values in zip(PER_CLASS_METRICS, scores[:3], strict=True):
                out.update({per_class_key(metric, name): float(v) for name, v in zip(names, values, strict=True)})
    return out


def regression_metrics(predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """predictions, targets: [N] floats. A constant prediction has no correlation: reported as 0."""
    constant = np.ptp(predictions) == 0 or np.ptp(targets) == 0
    return {
        "pearson": 0.0 if constant else float(stats.pearsonr(predictions, targets)[0]),
        "spearman": 0.0 if constant else float(stats.spearmanr(predictions, targets)[0]),
        "mse": float(np.mean((predictions - targets) ** 2)),
    }


def compute_metrics(task: TaskSpec, outputs: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    """outputs: [N, num_labels] logits (or [N, 1] scores); labels: [N] (multi-label: [N, L]); weights: [N]."""
    outputs, labels = _real(weights, outputs, labels)
    if task.multi_label:  # per-epoch figures at threshold 0.5 and T = 1; the tuned ones come after training
        probs = sigmoid_probs(outputs)
        return multilabel_metrics(decide(probs, DEFAULT_THRESHOLD), labels, probs, task.per_class_labels())
    if task.is_regression:
        return regression_metrics(outputs.reshape(-1).astype(np.float64), labels.astype(np.float64))
    return classification_metrics(outputs.argmax(axis=-1), labels, task.num_labels, task.per_class_labels())


def baseline_metrics(task: TaskSpec, train_labels: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The metrics of a model that learned nothing: always the training split's majority class (regression: its
    mean), scored on `labels`. A candidate for @champion must beat them."""
    if task.multi_label:  # always the training split's most frequent label set (often the empty one)
        return compute_metrics(task, majority_set_outputs(train_labels, len(labels)), labels, np.ones(len(labels)))
    if task.is_regression:
        constant = np.full((len(labels), 1), float(np.mean(train_labels)))
        return compute_metrics(task, constant, labels, np.ones(len(labels)))
    if task.token_level:  # every word the most frequent training tag (O): no entity found
        from bertcls.evaluation.tagging import tagging_metrics

        majority = int(np.bincount(np.asarray(train_labels, dtype=int), minlength=task.num_labels).argmax())
        return tagging_metrics(task, np.full(len(labels), majority), labels, np.asarray([len(labels)]))
    majority = int(np.bincount(np.asarray(train_labels, dtype=int), minlength=task.num_labels).argmax())
    return compute_metrics(task, np.eye(task.num_labels)[np.full(len(labels), majority)], labels, np.ones(len(labels)))


def mean_loss(task: TaskSpec, outputs: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of [N, C] logits (or squared error of [N, 1] scores), in float64; training's loss."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if len(outputs) == 0:
        return float("nan")
    if task.is_regression:
        return float(np.mean((outputs[:, 0] - labels) ** 2))
    if task.multi_label:
        return binary_nll(outputs, labels)
    top = outputs.max(axis=-1, keepdims=True)  # [N, 1]
    log_norm = top[:, 0] + np.log(np.exp(outputs - top).sum(axis=-1))  # [N]
    return float(np.mean(log_norm - outputs[np.arange(len(outputs)), labels]))


def extra_metric(name_or_path: str, predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
    """An optional `evaluate` module named by local path or hub id (the hub needs a network)."""
    import evaluate

    try:
        module = evaluate.load(name_or_path)
    except Exception as err:  # noqa: BLE001 - evaluate raises many types for a missing module
        raise ConfigError(
            f"Cannot load the evaluate metric {name_or_path!r} ({type(err).__name__}). evaluate fetches "
            "metric scripts from the hub: offline, pass a local path to a metric script instead."
        ) from None
    result = module.compute(predictions=predictions, references=references)
    return {k: float(v) for k, v in result.items() if np.isscalar(v)}


def per_class_table(predictions: np.ndarray, labels: np.ndarray, names: tuple[str, ...]):
    """Precision, recall, F1 and support per class, in label order (a pandas DataFrame)."""
    import pandas as pd

    precision, recall, f1, support = skm.precision_recall_fscore_support(
        labels, predictions, labels=list(range(len(names))), zero_division=0
    )
    return pd.DataFrame(
        {"label": list(names), "precision": precision, "recall": recall, "f1": f1, "support": support.astype(int)}
    )


def most_confident_mistakes(
    probs: np.ndarray,
    labels: np.ndarray,
    names: tuple[str, ...],
    texts: list[str],
    pairs: list[str] | None,
    top: int,
):
    """The `top` wrong predictions, most confident first (ties in row order): text(, text_pair), label,
    predicted, confidence, as a pandas DataFrame. probs: [T, C]; labels: [T]."""
    import pandas as pd

    predicted = probs.argmax(-1)  # [T]
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-probs[wrong, predicted[wrong]], kind="stable")][:top]
    table = {"text": [texts[i] for i in wrong]}
    if pairs is not None:
        table["text_pair"] = [pairs[i] for i in wrong]
    table.update(
        label=[names[labels[i]] for i in wrong],
        predicted=[names[predicted[i]] for i in wrong],
        confidence=[float(probs[i, predicted[i]]) for i in wrong],
    )
    return pd.DataFrame(table)


def top_confusions(labels: np.ndarray, predictions: np.ndarray, names: tuple[str, ...], top: int = 50):
    """The `top` most frequent mistakes as (label, predicted, count, share of the label's examples), most frequent
    first (ties by label order): what a confusion matrix shows, for more classes than a figure can hold."""
    import pandas as pd

    counts = skm.confusion_matrix(labels, predictions, labels=list(range(len(names))))  # [C, C]
    np.fill_diagonal(counts, 0)
    true, predicted = np.nonzero(counts)
    order = np.lexsort((predicted, true, -counts[true, predicted]))[:top]
    support = np.bincount(labels, minlength=len(names))
    rows = [
        (names[t], names[p], int(counts[t, p]), float(counts[t, p] / support[t]))
        for t, p in zip(true[order], predicted[order], strict=True)
    ]
    return pd.DataFrame(rows, columns=["label", "predicted", "count", "share_of_label"])
