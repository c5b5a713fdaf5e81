"""Task metrics agree with scikit-learn / scipy on the real rows and ignore padding rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics as skm

from bertcls.data.tasks import TaskSpec, metric_direction, per_class_key, primary_metric_for
from bertcls.evaluation.metrics import compute_metrics

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


def test_multiclass_has_no_binary_f1_but_each_class_scores():
    task = TaskSpec("t", ("a", "b", "c d"), False, "accuracy", False)
    predicted, labels = np.array([0, 1, 2, 2]), np.array([0, 1, 2, 1])
    got = compute_metrics(task, np.eye(3)[predicted], labels, np.ones(4))
    per_class = {f"{m}_{n}" for m in ("precision", "recall", "f1") for n in ("a", "b", "c d")}
    assert set(got) == {"accuracy", "macro_f1", "mcc", *per_class} and got["accuracy"] == 0.75
    assert set(task.metric_names()) == set(got)
    precision, recall, f1, _ = skm.precision_recall_fscore_support(labels, predicted)
    assert [got["recall_a"], got["recall_b"], got["recall_c d"]] == pytest.approx(recall)
    assert [got["precision_a"], got["precision_b"], got["precision_c d"]] == pytest.approx(precision)
    assert [got["f1_a"], got["f1_b"], got["f1_c d"]] == pytest.approx(f1)


def test_per_class_metric_names_are_mlflow_safe_and_capped():
    assert per_class_key("recall", "sci/tech: A+B") == "recall_sci/tech_ A_B"
    many = TaskSpec("t", tuple(f"c{i}" for i in range(31)), False, "accuracy", False)
    assert many.metric_names() == ("accuracy", "macro_f1", "mcc")  # 93 series a run: the table holds them
    assert metric_direction("best_val_recall_spam") == "max" and metric_direction("test_ece_uncalibrated") == "min"


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
    from bertcls.evaluation.metrics import extra_metric

    script = Path(__file__).parent / "assets" / "error_rate" / "error_rate.py"
    assert extra_metric(str(script), np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])) == {"error_rate": 0.25}
    with pytest.raises(ConfigError, match="pass a local path"):
        extra_metric("no-such-org/no-such-metric", np.array([0]), np.array([0]))


def test_most_confident_mistakes_are_ordered_by_confidence_ties_in_row_order():
    from bertcls.evaluation.metrics import most_confident_mistakes

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
    from bertcls.evaluation.metrics import per_class_table

    table = per_class_table(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), ("ham", "spam"))
    assert list(table["label"]) == ["ham", "spam"] and list(table["support"]) == [3, 1]
    assert table["precision"].tolist() == pytest.approx([1.0, 0.5]) and table["recall"].tolist() == pytest.approx(
        [2 / 3, 1.0]
    )


def test_mean_loss_is_the_mean_cross_entropy_or_squared_error_computed_by_hand():
    """Every logged val/test loss: checked against hand-computed values where a plausible wrong formula differs
    (sum instead of mean, the wrong class's log-probability, absolute instead of squared error)."""
    from bertcls.evaluation.metrics import mean_loss

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
    from bertcls.evaluation.metrics import mean_loss
    from bertcls.train.steps import weighted_loss

    rng = np.random.default_rng(1)
    logits, labels = rng.normal(size=(16, 3)) * 3, rng.integers(0, 3, size=16)
    task = TaskSpec("t", ("a", "b", "c"), False, "accuracy", False)
    total, weight = weighted_loss(logits.astype(np.float32), labels, np.ones(16, np.float32), False)
    assert mean_loss(task, logits, labels) == pytest.approx(float(total) / float(weight), rel=1e-5)


@pytest.mark.parametrize(
    ("metric", "direction"),
    [
        ("val_perplexity", "min"),
        ("best_val_mlm_loss", "min"),
        ("test_error_rate", "min"),
        ("val_ece", "min"),
        ("test_brier", "min"),
        ("best_val_mse", "min"),
        ("val_loss", "min"),
        ("best_val_mcc", "max"),
        ("test_accuracy", "max"),
        ("val_macro_f1", "max"),
        ("best_val_pearson", "max"),
    ],
)
def test_metric_directions_come_from_one_table(metric, direction):
    assert metric_direction(metric) == direction


def test_an_unknown_metric_needs_its_direction_said():
    from bertcls.errors import ConfigError

    with pytest.raises(ConfigError, match="does not know whether a higher or a lower 'val_bleu' is better"):
        metric_direction("val_bleu")
    assert metric_direction("val_bleu", "max") == "max" and metric_direction("val_loss", "max") == "max"


def test_top_confusions_lists_the_most_frequent_mistakes_first():
    from bertcls.evaluation.metrics import top_confusions

    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    predicted = np.array([1, 1, 0, 0, 1, 0, 1, 1, 2])
    table = top_confusions(labels, predicted, ("a", "b", "c"))
    assert table.values.tolist() == [["a", "b", 2, 2 / 3], ["c", "b", 2, 0.5], ["b", "a", 1, 0.5], ["c", "a", 1, 0.25]]


def test_many_classes_get_a_table_of_top_confusions_instead_of_a_figure(empty_store):
    """500 classes: the figure would be 600 x 600 inches (14 GB reached in 40 s); a table stands in above 30."""
    import mlflow

    from bertcls.evaluation import figures
    from bertcls.tracking import runs

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 500, size=2000)
    predicted = np.where(rng.random(2000) < 0.7, labels, rng.integers(0, 500, size=2000))
    names = tuple(f"class {i}" for i in range(500))
    with mlflow.start_run(experiment_id=mlflow.create_experiment("many classes")) as run:
        many = figures.confusion(labels, predicted, names, "val")
        few = figures.confusion(labels % 3, predicted % 3, names[:3], "test")
        runs.log_outputs({**many, **few})
    path = "val_top_confusions.json"
    assert list(many) == [path] and list(few) == ["figures/test_confusion_matrix.png"]
    saved = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/{path}")  # what the UI's table view reads
    table = pd.DataFrame(saved["data"], columns=saved["columns"])
    assert len(table) == 50 and list(table.columns) == ["label", "predicted", "count", "share_of_label"]
    assert table["count"].is_monotonic_decreasing
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "figures")}
    assert artifacts == {"figures/test_confusion_matrix.png"}


def test_the_baseline_always_answers_the_training_majority():
    from bertcls.evaluation.metrics import baseline_metrics

    got = baseline_metrics(BINARY, np.array([0, 0, 0, 1]), np.array([0, 1, 1, 1]))  # majority of train: 0
    assert got["accuracy"] == 0.25 and got["mcc"] == 0.0 and got["f1"] == 0.0
    regression = TaskSpec("stsb", (), True, "pearson", True)
    got = baseline_metrics(regression, np.array([1.0, 3.0]), np.array([0.0, 4.0]))  # always 2.0
    assert got["mse"] == 4.0 and got["pearson"] == 0.0
