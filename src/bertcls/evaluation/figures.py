"""Figures of a run as pure functions: each returns `{artifact path: matplotlib Figure or table}`; the caller
logs them (`bertcls.tracking.runs.log_outputs`) and nothing here knows about MLflow."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from bertcls.evaluation.metrics import top_confusions

CONFUSION_FIGURE_MAX_CLASSES = 30  # beyond, a figure is unreadable (and 500 classes took 14 GB to draw)
Outputs = dict[str, "plt.Figure | pd.DataFrame"]


def learning_curves(history: list[dict[str, float]], primary: str) -> Outputs:
    """Train and validation loss, and the primary validation metric, per epoch."""
    epochs = np.arange(1, len(history) + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train_loss")
    left.plot(epochs, [h["val_loss"] for h in history], marker="o", label="val_loss")
    left.set(xlabel="epoch", ylabel="loss", title="Loss")
    left.legend()
    right.plot(epochs, [h[f"val_{primary}"] for h in history], marker="o", color="tab:green")
    right.set(xlabel="epoch", ylabel=f"val_{primary}", title=f"Validation {primary}")
    for axis in (left, right):
        axis.set_xticks(epochs)
        axis.grid(alpha=0.3)
    fig.tight_layout()
    return {"figures/learning_curves.png": fig}


def mlm_curve(history: list[dict[str, float]]) -> Outputs:
    """Held-out (from epoch 0, before training) and train MLM loss per epoch."""
    fig, axis = plt.subplots(figsize=(5, 4))
    axis.plot(range(len(history)), [h["val_mlm_loss"] for h in history], marker="o", label="val_mlm_loss")
    axis.plot(range(1, len(history)), [h["train_mlm_loss"] for h in history[1:]], marker="o", label="train_mlm_loss")
    axis.set(xlabel="epoch (0 = before training)", ylabel="MLM loss (nats per predicted token)", title="Masked LM")
    axis.set_xticks(range(len(history)))
    axis.grid(alpha=0.3)
    axis.legend()
    fig.tight_layout()
    return {"figures/mlm_loss.png": fig}


def confusion(
    labels: np.ndarray, predictions: np.ndarray, names: tuple[str, ...], split: str, title: str | None = None
) -> Outputs:
    """figures/<split>_confusion_matrix.png, or above CONFUSION_FIGURE_MAX_CLASSES classes the table
    <split>_top_confusions.json (the 50 most frequent mistakes)."""
    from sklearn.metrics import ConfusionMatrixDisplay

    if len(names) > CONFUSION_FIGURE_MAX_CLASSES:
        return {f"{split}_top_confusions.json": top_confusions(labels, predictions, names)}
    fig, axis = plt.subplots(figsize=(1.2 * len(names) + 3, 1.2 * len(names) + 2.5))
    ConfusionMatrixDisplay.from_predictions(
        labels,
        predictions,
        labels=list(range(len(names))),
        display_labels=list(names),
        ax=axis,
        colorbar=False,
        xticks_rotation=45 if len(names) > 3 else "horizontal",
    )
    axis.set_title(title or f"{split} confusion matrix")
    fig.tight_layout()
    return {f"figures/{split}_confusion_matrix.png": fig}


def _metric_by_parameter(done: pd.DataFrame, metric: str, swept: list[str]) -> Outputs:
    """The metric against lr (or the first numeric swept parameter), one line per epoch budget."""
    x = "lr" if "lr" in swept else next((p for p in swept if pd.api.types.is_numeric_dtype(done[p])), None)
    if x is None:
        return {}
    fig, axis = plt.subplots(figsize=(6, 4))
    groups = done.groupby("epochs") if "epochs" in swept and x != "epochs" else [("all", done)]
    for budget, rows in groups:
        rows = rows.groupby(x, as_index=False)[metric].max().sort_values(x)  # best over the other settings
        axis.plot(rows[x], rows[metric], marker="o", label=f"epochs={budget}" if budget != "all" else None)
    axis.set(xlabel=x, ylabel=metric, title=f"{metric} by {x}" + (" per epoch budget" if len(swept) > 1 else ""))
    if x == "lr":
        axis.set_xscale("log")
    if axis.get_legend_handles_labels()[1]:
        axis.legend()
    axis.grid(alpha=0.3)
    fig.tight_layout()
    return {f"figures/{metric}_by_{x}.png": fig}


def _end_label(values: pd.Series, last: bool) -> str:
    """The value an axis of parallel coordinates ends at: the min/max, or the first/last category."""
    if pd.api.types.is_numeric_dtype(values):
        return f"{values.max() if last else values.min():.3g}"
    return str(sorted(values.unique())[-1 if last else 0])


def _parallel_coordinates(done: pd.DataFrame, metric: str, swept: list[str]) -> Outputs:
    """Every swept parameter and the metric, one line per trial, coloured by the metric."""
    columns = [*swept, metric]
    fig, axis = plt.subplots(figsize=(1.8 * len(columns) + 2, 4))
    scaled = {}
    for column in columns:
        values = done[column]
        if not pd.api.types.is_numeric_dtype(values):
            values = values.map({v: i for i, v in enumerate(sorted(values.unique()))})
        low, high = float(values.min()), float(values.max())
        scaled[column] = (values - low) / (high - low) if high > low else values * 0 + 0.5
    colours = plt.cm.viridis(scaled[metric].to_numpy(dtype=float))
    for row in range(len(done)):
        axis.plot(range(len(columns)), [scaled[c].iloc[row] for c in columns], color=colours[row], alpha=0.8)
    axis.set_xticks(range(len(columns)), columns)
    axis.set_yticks([])
    for i, column in enumerate(columns):
        axis.annotate(_end_label(done[column], False), (i, 0), textcoords="offset points", xytext=(3, -12), fontsize=7)
        axis.annotate(_end_label(done[column], True), (i, 1), textcoords="offset points", xytext=(3, 4), fontsize=7)
    axis.set_title(f"trials: parameters and {metric} (colour)")
    fig.tight_layout()
    return {"figures/parallel_coordinates.png": fig}


def sweep_figures(table: pd.DataFrame, metric: str, swept: list[str]) -> Outputs:
    """A sweep parent run's figures, from the trial table (finished and pruned trials)."""
    done = table[table["state"].isin(["COMPLETE", "PRUNED"])].copy()
    if done.empty:
        return {}
    return {**_metric_by_parameter(done, metric, swept), **_parallel_coordinates(done, metric, swept)}


def tagging_outputs(task, predictions: dict, best_epoch: int, title: str | None = None) -> Outputs:
    """A word tagger's tables and figure: <split>_entity_types.json (precision / recall / F1 / support per entity
    type) for each split in `predictions` (SplitPredictions by split prefix: val, test), and the word-tag
    confusion matrix of the first of them."""
    from bertcls.evaluation.tagging import entity_type_table, predicted_tags

    outputs: Outputs = {}
    tags = {split: predicted_tags(task, result.outputs, result.word_counts) for split, result in predictions.items()}
    for split, result in predictions.items():
        if task.primary_metric == "f1":
            outputs[f"{split}_entity_types.json"] = entity_type_table(
                task, tags[split], result.labels, result.word_counts
            )
    split, first = next(iter(predictions.items()))
    title = title or f"validation word tags (best epoch {best_epoch})"
    outputs.update(confusion(first.labels, tags[split], task.label_names, split, title=title))
    return outputs


def reliability_diagram(logits: np.ndarray, labels: np.ndarray, temperature: float, split: str) -> Outputs:
    """figures/<split>_reliability.png: accuracy against mean top-label confidence per confidence bin (ECE_BINS
    equal-width bins), before and after temperature scaling, with each one's ECE; below, how many texts each bin
    holds. On the diagonal, a probability means what it says."""
    from bertcls.evaluation.calibration import scaled_probs

    shown = [("model's own", scaled_probs(logits, 1.0), "tab:red")]
    if temperature != 1.0:
        shown.append((f"temperature {temperature:.3g}", scaled_probs(logits, temperature), "tab:blue"))
    return _reliability(shown, labels, split, "texts", "confidence (top-label probability)")


def _reliability(shown: list[tuple[str, np.ndarray, str]], labels: np.ndarray, split: str, unit: str, x: str):
    """The reliability figure of each (name, probs [N, C], colour) in `shown` against labels [N]."""
    from bertcls.evaluation.calibration import ECE_BINS, confidence_bins, expected_calibration_error

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.5, 6.5), height_ratios=[3, 1], sharex=True)
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    edges = np.linspace(0, 1, ECE_BINS + 1)
    for i, (name, probs, colour) in enumerate(shown):
        count, confidence, accuracy = confidence_bins(probs, labels)
        filled = count > 0
        ece = expected_calibration_error(probs, labels)
        top.plot(confidence[filled], accuracy[filled], marker="o", color=colour, label=f"{name}: ECE {ece:.4f}")
        width = (edges[1] - edges[0]) / len(shown)
        bottom.bar(edges[:-1] + i * width, count, width=width, align="edge", color=colour, alpha=0.7)
    top.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1.02), title=f"{split} reliability ({len(labels)} {unit})")
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize=8)
    bottom.set(xlabel=x, ylabel=unit, yscale="log")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    return {f"figures/{split}_reliability.png": fig}


def multilabel_outputs(task, predictions: dict, calibration) -> Outputs:
    """A multi-label classifier's outputs per split (val, test): <split>_per_label_metrics.json (precision,
    recall, F1, support, average precision, threshold, temperature per label, at the tuned thresholds) and the
    reliability diagram of every (text, label) forecast before and after the per-label temperatures."""
    import pandas as pd
    from sklearn import metrics as skm

    from bertcls.evaluation.multilabel import decide, sigmoid_probs

    temperatures = calibration.temperatures or (1.0,) * task.num_labels
    thresholds = calibration.thresholds or (0.5,) * task.num_labels
    outputs: Outputs = {}
    for split, result in predictions.items():
        probs = sigmoid_probs(result.outputs, temperatures)  # [T, L]
        labels = np.asarray(result.labels).astype(int)  # [T, L]
        predicted = decide(probs, thresholds).astype(int)
        precision, recall, f1, support = skm.precision_recall_fscore_support(
            labels, predicted, average=None, zero_division=0
        )
        ap = [
            skm.average_precision_score(labels[:, i], probs[:, i]) if labels[:, i].any() else float("nan")
            for i in range(task.num_labels)
        ]
        outputs[f"{split}_per_label_metrics.json"] = pd.DataFrame(
            {
                "label": list(task.label_names),
                "precision": precision,
                "recall": recall,
                "f1": f1,
                "support": support.astype(int),
                "average_precision": ap,
                "threshold": list(thresholds),
                "temperature": list(temperatures),
            }
        )
        flat = labels.reshape(-1)
        own = sigmoid_probs(result.outputs).reshape(-1)
        shown = [("model's own", np.stack([1 - own, own], -1), "tab:red")]
        if any(t != 1.0 for t in temperatures):
            after = probs.reshape(-1)
            shown.append(("per-label temperatures", np.stack([1 - after, after], -1), "tab:blue"))
        outputs.update(_reliability(shown, flat, split, "text-label pairs", "confidence (of the forecast yes / no)"))
    return outputs


def precision_recall_curves(probs: np.ndarray, labels: np.ndarray, names: tuple[str, ...], split: str) -> Outputs:
    """figures/<split>_pr_curves.png: each class against the rest, precision by recall as its probability's
    threshold moves, average precision in the legend (up to CONFUSION_FIGURE_MAX_CLASSES classes)."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    if len(names) > CONFUSION_FIGURE_MAX_CLASSES:
        return {}
    fig, axis = plt.subplots(figsize=(6, 5))
    for c, name in enumerate(names):
        positive = labels == c
        if not positive.any():  # no example of the class: no curve
            continue
        precision, recall, _ = precision_recall_curve(positive, probs[:, c])
        ap = average_precision_score(positive, probs[:, c])
        axis.step(recall, precision, where="post", label=f"{name} (AP {ap:.3f}, {int(positive.sum())} texts)")
    axis.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=f"{split} precision-recall")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return {f"figures/{split}_pr_curves.png": fig}


def classifier_outputs(
    task, predictions: dict, best_epoch: int, temperature: float, title: str | None = None
) -> Outputs:
    """A text classifier's tables and figures for each split in `predictions` (SplitPredictions by split prefix:
    val, test): <split>_per_class_metrics.json, the precision-recall curves and the reliability diagram (with
    the fitted temperature); the confusion matrix of the first split."""
    from bertcls.evaluation.calibration import scaled_probs
    from bertcls.evaluation.metrics import per_class_table

    outputs: Outputs = {}
    for split, result in predictions.items():
        probs = scaled_probs(result.outputs, temperature)  # [T, C]
        outputs[f"{split}_per_class_metrics.json"] = per_class_table(probs.argmax(-1), result.labels, task.label_names)
        outputs.update(precision_recall_curves(probs, result.labels, task.label_names, split))
        outputs.update(reliability_diagram(result.outputs, result.labels, temperature, split))
    split, first = next(iter(predictions.items()))
    title = title or f"validation confusion matrix (best epoch {best_epoch})"
    outputs.update(confusion(first.labels, first.outputs.argmax(-1), task.label_names, split, title=title))
    return outputs
