"""class_weights: parsed and refused before a run, balanced as scikit-learn's, applied to each row's loss."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import special
from sklearn.metrics import log_loss
from sklearn.utils.class_weight import compute_class_weight

from bertcls.config import TrainConfig
from bertcls.data.batching import TokenizedSplit, fit_buckets, iterate_batches
from bertcls.errors import ConfigError, DataError
from bertcls.train.class_weights import class_weight_vector, example_weights

LABELS = ("ham", "spam")


def test_balanced_is_scikit_learns_compute_class_weight():
    labels = np.array([0] * 87 + [1] * 13 + [2] * 5)
    ours = class_weight_vector("balanced", labels, ("a", "b", "c"))
    np.testing.assert_allclose(ours, compute_class_weight("balanced", classes=np.arange(3), y=labels), rtol=1e-6)


@pytest.mark.parametrize("spec", ["1,5", "1 5", "[1, 5]", " 1.0 ,5 "])
def test_a_list_gives_one_weight_per_class_in_label_order(spec):
    np.testing.assert_array_equal(class_weight_vector(spec, np.array([0, 1]), LABELS), [1.0, 5.0])


def test_none_gives_no_weights():
    assert class_weight_vector("none", np.array([0, 1]), LABELS) is None


def test_the_wrong_number_of_weights_names_the_labels_in_order():
    with pytest.raises(ConfigError, match=r"3 number\(s\) but the task has 2 classes, in this order: ham, spam"):
        class_weight_vector("1,2,3", np.array([0, 1]), LABELS)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("1,-2", ">= 0"),
        ("0,0", "at least one above 0"),
        ("1,nan", "finite"),
        ("1,inf", "finite"),
        ("heavy", "none, balanced, or one number per class"),
        ("", "none, balanced, or one number per class"),
    ],
)
def test_bad_weights_are_refused_when_the_config_is_made(spec, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(class_weights=spec)


def test_balanced_refuses_a_class_with_no_training_example():
    with pytest.raises(DataError, match="spam has no example"):
        class_weight_vector("balanced", np.array([0, 0, 0]), LABELS)


def test_weighted_loss_is_the_weighted_mean_cross_entropy_as_scikit_learn_computes_it():
    """sum_i w[y_i] CE_i / sum_i w[y_i]: PyTorch's CrossEntropyLoss(weight=w), scikit-learn's log_loss with
    sample_weight."""
    from bertcls.train.steps import weighted_loss

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(40, 3))  # [N, C]
    labels = rng.integers(0, 3, size=40)
    rows = example_weights(np.array([0.5, 1.0, 4.0], dtype=np.float32), labels)  # [N]
    loss_sum, weight_sum = weighted_loss(logits, labels, rows, False)
    probs = special.softmax(logits, axis=-1)
    expected = log_loss(labels, probs, sample_weight=rows, labels=[0, 1, 2])
    assert float(loss_sum) / float(weight_sum) == pytest.approx(expected, rel=1e-5)


def test_batches_carry_each_rows_class_weight_once_and_fill_rows_none():
    lengths = np.array([5, 9, 3, 7, 4, 8, 6])
    ids = np.ones((7, 16), dtype=np.int32)
    labels = np.array([0, 1, 0, 0, 1, 0, 0], dtype=np.int32)
    split = TokenizedSplit(ids, np.zeros_like(ids), lengths.astype(np.int32), labels)
    split = dataclasses.replace(split, weights=example_weights(np.array([1.0, 3.0], dtype=np.float32), labels))
    seen = []
    for batch in iterate_batches(split, 4, fit_buckets(lengths, 16, max_buckets=2, multiple=8), shuffle=False):
        real = batch["weights"] > 0  # fill rows (weight 0, whatever their class) carry no loss
        seen.extend(zip(batch["labels"][real].tolist(), batch["weights"][real].tolist(), strict=True))
    assert sorted(seen) == sorted([(0, 1.0)] * 5 + [(1, 3.0)] * 2)
