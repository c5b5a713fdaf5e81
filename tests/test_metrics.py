"""Task metrics agree with scikit-learn / scipy on the real rows and ignore padding rows."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from bertcls.data.tasks import TaskSpec, metric_direction, primary_metric_for
from bertcls.metrics import compute_metrics

BINARY = TaskSpec("t", ("ham", "spam"), False, "accuracy", False)


def test_classification_metrics_ignore_padding_rows():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 2))
    labels = rng.integers(0, 2, size=50)
    weights = np.ones(50)
    weights[40:] = 0
    labels[40:] = 1 - logits[40:].argmax(-1)  # padding rows would all be wrong if counted
    got = compute_metrics(BINARY, logits, labels, weights)
    pred = logits[:40].argmax(-1)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(labels[:40], pred))
    assert got["mcc"] == pytest.approx(skm.matthews_corrcoef(labels[:40], pred))
    assert got["f1"] == pytest.approx(skm.f1_score(labels[:40], pred))
    assert got["macro_f1"] == pytest.approx(skm.f1_score(labels[:40], pred, average="macro"))


def test_multiclass_has_no_binary_f1():
    task = TaskSpec("t", ("a", "b", "c"), False, "accuracy", False)
    got = compute_metrics(task, np.eye(3)[[0, 1, 2, 2]], np.array([0, 1, 2, 1]), np.ones(4))
    assert set(got) == {"accuracy", "macro_f1", "mcc"} and got["accuracy"] == 0.75


def test_regression_metrics():
    task = TaskSpec("stsb", (), True, "pearson", True)
    scores = np.array([[0.1], [0.5], [0.9], [2.0]])
    targets = np.array([0.0, 0.4, 1.0, 1.5])
    got = compute_metrics(task, scores, targets, np.array([1, 1, 1, 0]))
    assert got["pearson"] == pytest.approx(stats.pearsonr(scores[:3, 0], targets[:3])[0])
    assert got["spearman"] == pytest.approx(1.0)


def test_primary_metrics_and_directions():
    assert primary_metric_for("cola", False) == "mcc"
    assert primary_metric_for("mrpc", False) == "f1" and primary_metric_for("qqp", False) == "f1"
    assert primary_metric_for("stsb", True) == "pearson" and primary_metric_for("sst2", False) == "accuracy"
    assert primary_metric_for(None, False) == "accuracy"
    assert metric_direction("val_loss") == "min" and metric_direction("val_mcc") == "max"


def test_extra_metric_from_a_local_evaluate_script():
    from pathlib import Path

    from bertcls.errors import ConfigError
    from bertcls.metrics import extra_metric

    script = Path(__file__).parent / "assets" / "error_rate" / "error_rate.py"
    assert extra_metric(str(script), np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])) == {"error_rate": 0.25}
    with pytest.raises(ConfigError, match="pass a local path"):
        extra_metric("no-such-org/no-such-metric", np.array([0]), np.array([0]))


def test_most_confident_mistakes_are_ordered_by_confidence_ties_in_row_order():
    from bertcls.metrics import most_confident_mistakes

    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.8, 0.2], [0.3, 0.7]])  # [T, C]
    labels = np.array([0, 0, 0, 1, 0])  # rows 1, 2, 3, 4 are wrong; 2 and 4 tie at 0.7
    texts = ["a", "b", "c", "d", "e"]
    table = most_confident_mistakes(probs, labels, ("ham", "spam"), texts, None, top=3)
    assert list(table.columns) == ["text", "label", "predicted", "confidence"]
    assert list(table["text"]) == ["b", "d", "c"] and list(table["predicted"]) == ["spam", "ham", "spam"]
    assert table["confidence"].tolist() == pytest.approx([0.8, 0.8, 0.7])
    paired = most_confident_mistakes(probs, labels, ("ham", "spam"), texts, [t * 2 for t in texts], top=10)
    assert list(paired.columns)[:2] == ["text", "text_pair"] and list(paired["text_pair"]) == ["bb", "dd", "cc", "ee"]


def test_per_class_table_counts_each_class():
    from bertcls.metrics import per_class_table

    table = per_class_table(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), ("ham", "spam"))
    assert list(table["label"]) == ["ham", "spam"] and list(table["support"]) == [3, 1]
    assert table["precision"].tolist() == pytest.approx([1.0, 0.5]) and table["recall"].tolist() == pytest.approx(
        [2 / 3, 1.0]
    )


def test_mean_loss_is_the_mean_cross_entropy_or_squared_error_computed_by_hand():
    """Every logged val/test loss: checked against hand-computed values where a plausible wrong formula differs
    (sum instead of mean, the wrong class's log-probability, absolute instead of squared error)."""
    from bertcls.metrics import mean_loss

    logits = np.array([[2.0, -1.0], [0.5, 1.5], [0.0, 3.0]])
    labels = np.array([0, 1, 0])
    by_hand = [np.log1p(np.exp(-3.0)), np.log1p(np.exp(-1.0)), np.log1p(np.exp(3.0))]  # 0.049, 0.313, 3.049
    assert mean_loss(BINARY, logits, labels) == pytest.approx(np.mean(by_hand), rel=1e-12)
    assert mean_loss(BINARY, logits, 1 - labels) == pytest.approx(
        np.mean([np.log1p(np.exp(3.0)), np.log1p(np.exp(1.0)), np.log1p(np.exp(-3.0))]), rel=1e-12
    )
    regression = TaskSpec("stsb", (), True, "pearson", True)
    scores, targets = np.array([[3.0], [2.5], [1.0]]), np.array([0.5, 2.0, 1.0])  # errors 2.5, 0.5, 0
    assert mean_loss(regression, scores, targets) == pytest.approx((6.25 + 0.25) / 3, rel=1e-12)


def test_mean_loss_equals_the_training_step_loss_per_example():
    """The loss logged for validation is the one training minimises: weighted_loss / weight on the same rows."""
    from bertcls.metrics import mean_loss
    from bertcls.train.steps import weighted_loss

    rng = np.random.default_rng(1)
    logits, labels = rng.normal(size=(16, 3)) * 3, rng.integers(0, 3, size=16)
    task = TaskSpec("t", ("a", "b", "c"), False, "accuracy", False)
    total, weight = weighted_loss(logits.astype(np.float32), labels, np.ones(16, np.float32), False)
    assert mean_loss(task, logits, labels) == pytest.approx(float(total) / float(weight), rel=1e-5)
