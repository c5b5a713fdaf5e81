"""Class weights for imbalanced classes: `class_weights=none|balanced|<one weight per class>`.

Multi-label: a weight per label scales the positive term of that label's binary cross-entropy (`pos_weight`);
balanced is negatives / positives, so a rare label's presence weighs as much as its absence.

A weight multiplies each training example's cross-entropy, and the batch mean divides by the batch's summed
weights (PyTorch's `CrossEntropyLoss(weight=...)`), so a rare class's mistakes cost more without changing the
loss's scale. `balanced` is scikit-learn's: N / (classes x count of the class), from the training split.
"""

from __future__ import annotations

import numpy as np

from bertcls.config.training import BALANCED, NO_WEIGHTS, parse_weights
from bertcls.errors import ConfigError, DataError, setting


def class_weight_vector(spec: str, train_labels: np.ndarray, label_names: tuple[str, ...]) -> np.ndarray | None:
    """[C] float32 weights in label order for `spec`, from the training labels [N] where balanced; None for
    none. A list of the wrong length is a ConfigError naming the labels in order."""
    parsed = parse_weights(spec)
    if parsed == NO_WEIGHTS:
        return None
    num_labels = len(label_names)
    if parsed == BALANCED:
        counts = np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=num_labels)
        if (counts == 0).any():
            missing = ", ".join(label_names[i] for i in np.flatnonzero(counts == 0))
            raise DataError(
                f"class_weights=balanced needs every class in the training split, but {missing} has no example "
                "there. Add examples of it, or give the weights yourself (one per class, in label order)."
            )
        return (counts.sum() / (num_labels * counts)).astype(np.float32)
    if len(parsed) != num_labels:
        raise ConfigError(
            f"class_weights has {len(parsed)} number(s) but the task has {num_labels} classes, in this order: "
            f"{', '.join(label_names)}. Give one weight per class in that order, or use "
            f"{setting('class_weights', 'balanced')}."
        )
    return np.asarray(parsed, dtype=np.float32)


def example_weights(weights: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[N] each training row's weight: its class's (a window carries its text's label)."""
    return weights[np.asarray(labels, dtype=np.int64)].astype(np.float32)


def positive_weights(spec: str, train_labels: np.ndarray, label_names: tuple[str, ...]) -> np.ndarray | None:
    """Multi-label: [L] float32 weights of each label's positive term in the binary cross-entropy (PyTorch's
    `pos_weight`) for `spec`; balanced is negatives / positives per label, from the training label sets [N, L].
    None for none."""
    parsed = parse_weights(spec)
    if parsed == NO_WEIGHTS:
        return None
    if parsed == BALANCED:
        positives = np.asarray(train_labels, dtype=np.float64).sum(axis=0)  # [L]
        if (positives == 0).any():
            missing = ", ".join(label_names[i] for i in np.flatnonzero(positives == 0))
            raise DataError(
                f"class_weights=balanced needs every label in the training split, but {missing} is on no text "
                "there. Add examples of it, or give the weights yourself (one per label, in label order)."
            )
        return ((len(train_labels) - positives) / positives).astype(np.float32)
    if len(parsed) != len(label_names):
        raise ConfigError(
            f"class_weights has {len(parsed)} number(s) but the task has {len(label_names)} labels, in this order: "
            f"{', '.join(label_names)}. Give one weight per label in that order (it scales the loss of the "
            "label's positive examples), or use "
            f"{setting('class_weights', 'balanced')}."
        )
    return np.asarray(parsed, dtype=np.float32)
