"""Multi-label scoring, thresholds and calibration, as pure functions of [N, L] logits and multi-hot labels.

A label is predicted when its probability, sigmoid(logit / T_l), reaches its threshold t_l. Both are fitted on
the validation split after training, in that order: one temperature per label (the binary NLL, as
`calibration.fit_temperature` for classes), then the threshold that maximises that label's F1. Calibration is
measured over every (text, label) pair as one binary forecast: ECE (15 bins), Brier score, NLL.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
from scipy import optimize, special
from sklearn import metrics as skm

from bertcls.data.tasks import PER_CLASS_METRICS, per_class_key
from bertcls.evaluation.calibration import ECE_BINS, LOG_T_BOUNDS, MIN_CALIBRATION_ROWS, expected_calibration_error
from bertcls.serving.decisions import DEFAULT_THRESHOLD

MIN_POSITIVES_FOR_THRESHOLD = 5  # fewer validation texts with the label tune its threshold to noise: keep 0.5


def sigmoid_probs(logits: np.ndarray, temperatures=None) -> np.ndarray:
    """[N, L] sigmoid(logits / T) in float64; temperatures: [L], a scalar, or None (1)."""
    logits = np.asarray(logits, dtype=np.float64)
    if temperatures is not None:
        logits = logits / np.asarray(temperatures, dtype=np.float64)
    return special.expit(logits)


def decide(probs: np.ndarray, thresholds) -> np.ndarray:
    """[N, L] bool: each label present where its probability reaches its threshold ([L] or a scalar)."""
    return probs >= np.asarray(thresholds, dtype=np.float64)


def multilabel_metrics(
    predicted: np.ndarray, labels: np.ndarray, probs: np.ndarray, names: tuple[str, ...] = ()
) -> dict[str, float]:
    """micro / macro F1, subset accuracy (the whole set right), average precision (macro over labels with a
    positive, from the probabilities), and with `names` each label's precision, recall and F1. predicted, labels:
    [N, L] 0/1; probs: [N, L]."""
    labels = np.asarray(labels).astype(int)
    predicted = np.asarray(predicted).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a label absent from both sides scores 0, as zero_division says
        out = {
            "micro_f1": float(skm.f1_score(labels, predicted, average="micro", zero_division=0)),
            "macro_f1": float(skm.f1_score(labels, predicted, average="macro", zero_division=0)),
            "subset_accuracy": float(skm.accuracy_score(labels, predicted)),
        }
        present = labels.sum(axis=0) > 0  # AP is undefined for a label with no positive
        out["average_precision"] = (
            float(skm.average_precision_score(labels[:, present], probs[:, present], average="macro"))
            if present.any()
            else 0.0
        )
        if names:
            scores = skm.precision_recall_fscore_support(labels, predicted, average=None, zero_division=0)
            for metric, values in zip(PER_CLASS_METRICS, scores[:3], strict=True):
                out.update({per_class_key(metric, name): float(v) for name, v in zip(names, values, strict=True)})
    return out


def binary_nll(logits: np.ndarray, labels: np.ndarray, temperature=1.0) -> float:
    """Mean over every (text, label) of the binary cross-entropy of sigmoid(logit / T); the training loss at T = 1."""
    z = np.asarray(logits, dtype=np.float64) / np.asarray(temperature, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    return float(np.mean(y * np.logaddexp(0.0, -z) + (1.0 - y) * np.logaddexp(0.0, z)))


def _fit_one_temperature(logits: np.ndarray, labels: np.ndarray) -> float | None:
    """The T minimising one label's binary NLL, or None when no finite minimum exists (every text separated)."""
    result = optimize.minimize_scalar(
        lambda log_t: binary_nll(logits, labels, float(np.exp(log_t))),
        bounds=LOG_T_BOUNDS,
        method="bounded",
        options={"xatol": 1e-5},
    )
    if min(abs(result.x - bound) for bound in LOG_T_BOUNDS) < 1e-3:
        return None
    return float(np.exp(result.x))


def tune_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
    """The threshold in (0, 1) maximising F1 of one label: [N] probabilities, [N] 0/1. Candidates: the midpoints
    between consecutive distinct probabilities (ties in F1: the one nearest 0.5)."""
    values = np.unique(probs)
    candidates = np.concatenate([[DEFAULT_THRESHOLD], (values[:-1] + values[1:]) / 2]) if len(values) > 1 else []
    best, best_f1 = DEFAULT_THRESHOLD, -1.0
    positives = labels.sum()
    for threshold in candidates:
        predicted = probs >= threshold
        true_positive = float((predicted & (labels > 0)).sum())
        f1 = 2 * true_positive / (predicted.sum() + positives) if predicted.sum() + positives else 0.0
        if f1 > best_f1 + 1e-12 or (abs(f1 - best_f1) <= 1e-12 and abs(threshold - 0.5) < abs(best - 0.5)):
            best, best_f1 = float(threshold), f1
    return best


@dataclasses.dataclass(frozen=True)
class LabelDecisions:
    """Per label: the temperature of its probability and its decision threshold, and what could not be fitted."""

    temperatures: tuple[float, ...]
    thresholds: tuple[float, ...]
    notes: tuple[str, ...] = ()  # decisions a user should know (too few positives: 0.5 kept), also logged


def fit_decisions(
    logits: np.ndarray, labels: np.ndarray, names: tuple[str, ...], calibrate: bool, split: str = "validation"
) -> LabelDecisions:
    """Temperatures (if `calibrate`), then thresholds on the calibrated probabilities, from logits [N, L] and
    labels [N, L] of `split` (validation, or the held-out calibration split). Too few texts, or a label with too
    few positives (or none wrong), keep T = 1 / t = 0.5 for it, with a note."""
    num_labels = len(names)
    notes: list[str] = []
    temperatures = [1.0] * num_labels
    if calibrate and len(labels) < MIN_CALIBRATION_ROWS:
        notes.append(
            f"the {split} split has {len(labels)} texts, fewer than the {MIN_CALIBRATION_ROWS} temperatures "
            "need; the probabilities are the model's own (temperature 1)"
        )
    elif calibrate:
        unfitted = []
        for i in range(num_labels):
            fitted = _fit_one_temperature(logits[:, i], labels[:, i])
            if fitted is None:
                unfitted.append(names[i])
            else:
                temperatures[i] = fitted
        if unfitted:
            notes.append(
                f"{len(unfitted)} label(s) keep temperature 1 (their {split} likelihood has no minimum: every "
                f"text separated, or no positive): {', '.join(unfitted[:20])}"
            )
    probs = sigmoid_probs(logits, temperatures)
    thresholds, few = [], []
    for i in range(num_labels):
        if labels[:, i].sum() < MIN_POSITIVES_FOR_THRESHOLD:
            thresholds.append(DEFAULT_THRESHOLD)
            few.append(names[i])
        else:
            thresholds.append(tune_threshold(probs[:, i], labels[:, i]))
    if few:
        notes.append(
            f"{len(few)} label(s) have fewer than {MIN_POSITIVES_FOR_THRESHOLD} {split} texts and keep the "
            f"threshold {DEFAULT_THRESHOLD}: {', '.join(few[:20])}{' ...' if len(few) > 20 else ''}"
        )
    return LabelDecisions(tuple(temperatures), tuple(thresholds), tuple(notes))


def calibration_metrics(logits: np.ndarray, labels: np.ndarray, temperatures) -> dict[str, float]:
    """ece, brier, nll over every (text, label) as a binary forecast, with the temperatures and `*_uncalibrated`."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    out = {}
    for suffix, t in (("", temperatures), ("_uncalibrated", None)):
        p = sigmoid_probs(logits, t).reshape(-1)  # [N * L]
        two_class = np.stack([1.0 - p, p], axis=-1)  # [N * L, 2]: top-label ECE of each binary forecast
        out[f"ece{suffix}"] = expected_calibration_error(two_class, y.astype(int), ECE_BINS)
        out[f"brier{suffix}"] = float(np.mean((p - y) ** 2))
        out[f"nll{suffix}"] = binary_nll(logits, labels, 1.0 if t is None else t)
    return out


def majority_set_outputs(train_labels: np.ndarray, count: int) -> np.ndarray:
    """[count, L] logits of a model that learned nothing: the training split's most frequent label set."""
    sets, counts = np.unique(np.asarray(train_labels) > 0.5, axis=0, return_counts=True)
    majority = sets[counts.argmax()]  # [L] bool
    return np.where(majority, 10.0, -10.0)[None, :].repeat(count, axis=0)
