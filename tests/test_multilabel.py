"""Multi-label: label sets read from lists, delimited strings and 0/1 columns; bad rows refused; the loss, the
metrics, per-label temperatures and thresholds checked against scikit-learn and brute force; the pyfunc's
threshold moved to the raw scale keeps the label set."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy import special
from sklearn import metrics as skm

from bertcls.config import DataConfig
from bertcls.data import prepare_data
from bertcls.data.pipeline import split_texts
from bertcls.data.sources import load_source
from bertcls.errors import ConfigError, DataError
from bertcls.evaluation import multilabel
from bertcls.evaluation.calibration import Calibration
from bertcls.evaluation.metrics import baseline_metrics, compute_metrics, mean_loss
from bertcls.train.class_weights import positive_weights
from bertcls.train.steps import Objective, weighted_loss

TOPICS = ["sports", "politics", "tech"]
ROWS = [  # (text, labels): every combination, the empty set included, several times
    (f"{word} story number {i}", labels)
    for i in range(8)
    for word, labels in [
        ("match", ["sports"]),
        ("election", ["politics"]),
        ("phone", ["tech"]),
        ("stadium vote", ["sports", "politics"]),
        ("gadget law", ["politics", "tech"]),
        ("weather", []),
    ]
]


def _files(tmp_path, form: str) -> DataConfig:
    """The same rows as JSONL label lists, CSV delimited strings or CSV 0/1 columns."""
    frames = {}
    for split, rows in (("train", ROWS[:36]), ("validation", ROWS[36:42]), ("test", ROWS[42:])):
        if form == "lists":
            path = tmp_path / f"{split}.jsonl"
            path.write_text("".join(json.dumps({"text": t, "label": ls}) + "\n" for t, ls in rows))
        elif form == "delimited":
            path = tmp_path / f"{split}.csv"
            pd.DataFrame({"text": [t for t, _ in rows], "label": [",".join(ls) for _, ls in rows]}).to_csv(
                path, index=False
            )
        else:
            path = tmp_path / f"{split}.csv"
            table = {"text": [t for t, _ in rows], **{n: [int(n in ls) for _, ls in rows] for n in TOPICS}}
            pd.DataFrame(table).to_csv(path, index=False)
        frames[split] = str(path)
    extra = {"delimited": {"label_delimiter": ","}, "columns": {"label_columns": "sports politics tech"}}
    return DataConfig(
        train_file=frames["train"],
        validation_file=frames["validation"],
        test_file=frames["test"],
        **extra.get(form, {}),
    )


def _expected(rows, names) -> np.ndarray:
    return np.array([[float(n in ls) for n in names] for _, ls in rows], dtype=np.float32)


@pytest.mark.parametrize("form", ["lists", "delimited", "columns"])
def test_every_form_gives_the_same_label_sets_and_the_empty_set_is_kept(tmp_path, form, tokenizer):
    data = prepare_data(_files(tmp_path, form), tokenizer)
    assert data.task.multi_label and data.task.kind == "multilabel" and data.task.primary_metric == "micro_f1"
    names = data.task.label_names
    assert set(names) == set(TOPICS)
    if form == "columns":
        assert names == tuple(TOPICS)  # label_columns order is label order
    np.testing.assert_array_equal(data.splits["train"].text_labels(), _expected(ROWS[:36], names))
    np.testing.assert_array_equal(data.splits["test"].text_labels(), _expected(ROWS[42:], names))
    assert (data.splits["train"].text_labels().sum(axis=1) == 0).sum() == 6  # "weather" rows: no label, not dropped


def test_a_validation_label_never_seen_in_training_is_named(tmp_path, tokenizer):
    config = _files(tmp_path, "lists")
    with open(config.validation_file, "a") as file:
        file.write(json.dumps({"text": "a cooking show", "label": ["food", "tech"]}) + "\n")
    with pytest.raises(DataError, match=r"validation split has labels never seen in training: 'food' \(first in row 7"):
        prepare_data(config, tokenizer)


def test_label_columns_that_are_not_0_or_1_are_refused_with_column_and_row(tmp_path):
    config = _files(tmp_path, "columns")
    frame = pd.read_csv(config.train_file)
    frame.loc[3, "tech"] = 2
    frame.to_csv(config.train_file, index=False)
    with pytest.raises(DataError, match=r"column 'tech' of the train split .* holds 2 in row 4"):
        split_texts(config)


def test_a_label_list_cell_that_is_not_a_list_is_refused(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"text": "a", "label": ["x"]}) + "\n" + json.dumps({"text": "b", "label": "x"}) + "\n")
    with pytest.raises(DataError):  # mixed types: pyarrow or our check refuses, never a silent guess
        split_texts(DataConfig(train_file=str(path), task="multilabel"))


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"label_columns": "a b", "label_column": "y"}, "label_column and label_delimiter do not apply"),
        ({"label_delimiter": ",", "task": "text"}, "task=text"),
        ({"label_delimiter": ""}, "must not be empty"),
    ],
)
def test_contradictory_multilabel_settings_are_refused(fields, message):
    with pytest.raises(ConfigError, match=message):
        DataConfig(**fields)


def test_goemotions_is_bundled_with_its_published_splits_and_28_labels():
    source = load_source(DataConfig(dataset="goemotions"))
    assert {k: len(v) for k, v in source.splits.items()} == {"train": 43410, "validation": 5426, "test": 5427}
    assert len(source.label_names) == 28 and source.label_names[0] == "admiration"
    assert source.label_names[-1] == "neutral"
    first = source.splits["test"][0]  # "I'm really sorry about your situation :( ..." 25 = sadness
    assert first["text"].startswith("I’m really sorry about your situation") and first["labels"] == ["sadness"]
    assert source.splits["test"][10]["labels"] == ["annoyance", "disapproval"]  # "3,10": ids index emotions.txt


def test_binary_cross_entropy_with_positive_weights_matches_the_formula_and_scikit_learn():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 4)).astype(np.float32)
    labels = (rng.random((6, 4)) > 0.6).astype(np.float32)
    weights = np.array([1, 1, 0.5, 1, 0, 1], np.float32)
    total, weight = weighted_loss(
        jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(weights), Objective("binary_cross_entropy")
    )
    per_row = [skm.log_loss(labels[i], special.expit(logits[i]), labels=[0, 1]) for i in range(6)]
    np.testing.assert_allclose(float(total), float(np.dot(per_row, weights)), rtol=1e-5)
    assert float(weight) == pytest.approx(weights.sum())
    pos = (2.0, 1.0, 3.0, 0.5)
    weighted, _ = weighted_loss(
        jnp.asarray(logits), jnp.asarray(labels), jnp.ones(6), Objective("binary_cross_entropy", pos)
    )
    p = special.expit(logits.astype(np.float64))
    formula = -(np.asarray(pos) * labels * np.log(p) + (1 - labels) * np.log(1 - p)).mean(axis=1).sum()
    np.testing.assert_allclose(float(weighted), formula, rtol=1e-5)
    assert mean_loss(_task(), logits, labels) == pytest.approx(np.mean(per_row), rel=1e-6)


def _task():
    from bertcls.data.tasks import TaskSpec

    return TaskSpec("t", ("a", "b", "c", "d"), False, "micro_f1", False, multi_label=True)


def test_balanced_positive_weights_are_negatives_over_positives_and_refuse_an_unseen_label():
    labels = np.array([[1, 0], [1, 1], [0, 0], [1, 0]], np.float32)
    np.testing.assert_allclose(positive_weights("balanced", labels, ("x", "y")), [1 / 3, 3.0])
    with pytest.raises(DataError, match="y is on no text"):
        positive_weights("balanced", labels[:, :1].repeat(2, axis=1) * [1, 0], ("x", "y"))
    with pytest.raises(ConfigError, match="one weight per label"):
        positive_weights("1,2,3", labels, ("x", "y"))


def test_metrics_are_scikit_learns_at_threshold_half_and_the_baseline_is_the_majority_set():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(40, 4))
    labels = (rng.random((40, 4)) > 0.7).astype(np.float32)
    found = compute_metrics(_task(), logits, labels, np.ones(40))
    predicted = (logits >= 0).astype(int)
    assert found["micro_f1"] == pytest.approx(skm.f1_score(labels, predicted, average="micro"))
    assert found["macro_f1"] == pytest.approx(skm.f1_score(labels, predicted, average="macro", zero_division=0))
    assert found["subset_accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted))
    assert found["average_precision"] == pytest.approx(skm.average_precision_score(labels, logits, average="macro"))
    assert found["recall_b"] == pytest.approx(skm.recall_score(labels[:, 1], predicted[:, 1], zero_division=0))
    train = np.array([[0, 0, 0, 0]] * 5 + [[1, 0, 0, 0]] * 2, np.float32)
    assert baseline_metrics(_task(), train, labels)["micro_f1"] == 0.0  # the empty set predicts nothing


def test_the_tuned_threshold_is_the_best_f1_over_every_cut():
    rng = np.random.default_rng(2)
    probs = rng.random(200)
    labels = (probs + rng.normal(0, 0.3, 200) > 0.7).astype(int)
    threshold = multilabel.tune_threshold(probs, labels)
    brute = max(skm.f1_score(labels, probs >= t, zero_division=0) for t in np.unique(probs))
    assert skm.f1_score(labels, probs >= threshold) == pytest.approx(brute)


def test_per_label_temperatures_lower_the_nll_and_keep_every_ranking():
    rng = np.random.default_rng(3)
    true_logits = rng.normal(0, 2, size=(400, 3))
    labels = (rng.random((400, 3)) < special.expit(true_logits)).astype(np.float32)
    overconfident = true_logits * np.array([3.0, 1.0, 0.5])  # too sharp, right, too flat
    decisions = multilabel.fit_decisions(overconfident, labels, ("a", "b", "c"), calibrate=True)
    np.testing.assert_allclose(decisions.temperatures, [3.0, 1.0, 0.5], rtol=0.25)
    found = multilabel.calibration_metrics(overconfident, labels, decisions.temperatures)
    assert found["nll"] < found["nll_uncalibrated"] and found["ece"] < found["ece_uncalibrated"]
    probs = multilabel.sigmoid_probs(overconfident, decisions.temperatures)
    for i in range(3):  # a temperature is monotone: the order of texts by a label's probability is unchanged
        assert (np.argsort(probs[:, i], kind="stable") == np.argsort(overconfident[:, i], kind="stable")).all()


def test_the_multilabel_ece_is_the_binary_forecasts_calibration_curve():
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(4)
    logits = rng.normal(size=(300, 2))
    labels = (rng.random((300, 2)) < special.expit(logits * 0.7)).astype(int)
    p = special.expit(logits).reshape(-1)
    y = labels.reshape(-1)
    confidence = np.maximum(p, 1 - p)
    correct = ((p >= 0.5).astype(int) == y).astype(int)
    accuracy, mean_confidence = calibration_curve(correct, confidence, n_bins=15, strategy="uniform")
    counts = np.histogram(confidence, bins=np.linspace(0, 1, 16))[0]
    expected = np.sum(counts[counts > 0] / len(y) * np.abs(accuracy - mean_confidence))
    found = multilabel.calibration_metrics(logits, labels, None)
    assert found["ece_uncalibrated"] == pytest.approx(expected, abs=1e-9)
    assert found["brier_uncalibrated"] == pytest.approx(skm.brier_score_loss(y, p))


def test_too_few_validation_positives_keep_half_and_say_so():
    logits = np.zeros((60, 2))
    labels = np.zeros((60, 2), np.float32)
    labels[:30, 0] = 1
    decisions = multilabel.fit_decisions(logits + labels * 2, labels, ("common", "rare"), calibrate=False)
    assert decisions.thresholds[1] == 0.5 and any("rare" in note for note in decisions.notes)
    assert decisions.temperatures == (1.0, 1.0)


def test_the_raw_scale_threshold_gives_the_same_label_set():
    from bertcls.serving.predictor import Predictor

    predictor = Predictor.__new__(Predictor)  # only the decision rule is under test here
    predictor.label_names = ["a", "b", "c"]
    predictor.calibration = Calibration(temperatures=(2.0, 0.5, 1.3), thresholds=(0.3, 0.7, 0.55))
    predictor.is_multilabel = True
    logits = np.random.default_rng(5).normal(0, 3, size=(500, 3))
    calibrated = predictor.probabilities(logits) >= predictor.thresholds()
    raw = predictor.probabilities(logits, calibrated=False) >= predictor.thresholds(calibrated=False)
    assert (calibrated == raw).all() and 0 < calibrated.mean() < 1
    assert (predictor.thresholds(threshold=0.9) == 0.9).all()
