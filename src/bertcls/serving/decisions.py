"""Multi-label decisions in numpy alone (the JAX predictor and the ONNX runtime both decide with them)."""

from __future__ import annotations

import numpy as np

DEFAULT_THRESHOLD = 0.5  # a label's threshold when none was tuned


def label_thresholds(
    num_labels: int, tuned, temperatures, calibrated: bool = True, threshold: float | None = None
) -> np.ndarray:
    """[L] each label's decision threshold on the probabilities served with `calibrated`: the ones tuned on
    validation (0.5 for a model without), moved to the raw scale for calibrated=false so the label set stays the
    same; `threshold` instead applies one number to every label."""
    if threshold is not None:
        return np.full(num_labels, float(threshold))
    tuned = np.asarray(list(tuned) or [DEFAULT_THRESHOLD] * num_labels, np.float64)
    if calibrated or not len(temperatures):
        return tuned
    # p_raw = sigmoid(z) and p_cal = sigmoid(z / T): p_cal >= t  <=>  z >= T * logit(t)  <=>  p_raw >= ...
    clipped = np.clip(tuned, 1e-12, 1 - 1e-12)
    return 1.0 / (1.0 + np.exp(-np.asarray(temperatures, np.float64) * np.log(clipped / (1 - clipped))))
