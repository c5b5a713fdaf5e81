"""Temperature scaling and the calibration measures, checked against scikit-learn and against the NLL itself."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, log_loss

from bertcls.evaluation.calibration import (
    ECE_BINS,
    LOG_T_PRIOR_SD,
    MIN_CALIBRATION_ROWS,
    Calibration,
    brier_score,
    calibrate,
    calibration_metrics,
    confidence_bins,
    expected_calibration_error,
    fit_temperature,
    nll,
    scaled_probs,
)


def _overconfident(rows: int, classes: int, sharpen: float, seed: int = 0):
    """Labels drawn from softmax(z), logits sharpen x z: a model `sharpen` times too confident. ([N, C], [N])"""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, size=(rows, classes))  # [N, C]
    true_probs = special.softmax(z, axis=-1)
    labels = np.array([rng.choice(classes, p=p) for p in true_probs])  # [N]
    return sharpen * z, labels


@pytest.mark.parametrize("classes", [2, 5])
def test_ece_matches_scikit_learns_calibration_curve(classes):
    logits, labels = _overconfident(2000, classes, sharpen=2.5, seed=classes)
    probs = scaled_probs(logits)
    confidence, correct = probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(int)
    accuracy, mean_confidence = calibration_curve(correct, confidence, n_bins=ECE_BINS, strategy="uniform")
    counts, _ = np.histogram(confidence, bins=np.linspace(0, 1, ECE_BINS + 1))  # continuous: no value on an edge
    filled = counts[counts > 0]
    expected = float(np.sum(filled / filled.sum() * np.abs(accuracy - mean_confidence)))
    assert expected_calibration_error(probs, labels) == pytest.approx(expected, abs=1e-12)
    count, ours_confidence, ours_accuracy = confidence_bins(probs, labels)
    np.testing.assert_array_equal(count, counts)
    np.testing.assert_allclose(ours_confidence[count > 0], mean_confidence, atol=1e-12)
    np.testing.assert_allclose(ours_accuracy[count > 0], accuracy, atol=1e-12)


def test_a_confidence_on_a_bin_edge_falls_in_the_lower_bin_as_scikit_learn_bins():
    probs = np.array([[0.6, 0.4], [0.4, 0.6], [1 / 3, 2 / 3]])  # confidences 0.6 (an inner edge at 15 bins: 9/15)
    labels = np.array([0, 0, 1])
    count, _, _ = confidence_bins(probs, labels)
    assert count[8] == 2 and count[9] == 1  # 0.6 -> bin [8/15, 9/15]; 2/3 = 10/15 -> bin 9


def test_brier_and_nll_match_scikit_learn():
    logits, labels = _overconfident(500, 2, sharpen=2.0)
    probs = scaled_probs(logits, 1.7)
    # the multi-class Brier sums over both classes: twice scikit-learn's binary one
    assert brier_score(probs, labels) == pytest.approx(2 * brier_score_loss(labels, probs[:, 1]), rel=1e-9)
    assert nll(logits, labels, 1.7) == pytest.approx(log_loss(labels, probs), rel=1e-9)


def test_fitted_temperature_minimises_the_nll_and_recovers_the_over_confidence():
    logits, labels = _overconfident(4000, 4, sharpen=3.0)
    temperature = fit_temperature(logits, labels, prior_sd=None)
    assert temperature == pytest.approx(3.0, rel=0.1)  # the sharpening the data was made with
    with_prior = fit_temperature(logits, labels, prior_sd=LOG_T_PRIOR_SD)
    assert with_prior == pytest.approx(temperature, rel=0.02)  # 4000 texts: the prior is nothing
    grid = np.exp(np.linspace(-2, 3, 400))
    assert nll(logits, labels, temperature) <= min(nll(logits, labels, t) for t in grid) + 1e-9


def test_the_prior_on_log_t_is_the_posterior_mode_and_counts_on_few_texts_only():
    pull = 0.5 / LOG_T_PRIOR_SD**2
    grid = np.linspace(-1.5, 1.5, 3001)  # log T
    for rows in (200, 20000):
        logits, labels = _overconfident(rows, 5, sharpen=1.6, seed=rows)
        prior, plain = fit_temperature(logits, labels, LOG_T_PRIOR_SD), fit_temperature(logits, labels)
        posterior = [rows * nll(logits, labels, float(np.exp(t))) + pull * t**2 for t in grid]
        assert np.log(prior) == pytest.approx(grid[int(np.argmin(posterior))], abs=2e-3)  # the mode, by brute force
        assert 0 < np.log(prior) < np.log(plain)  # pulled toward T = 1, never past it
        shrink = 1 - np.log(prior) / np.log(plain)
        assert (shrink > 0.05) if rows == 200 else (shrink < 0.01)  # a few hundred texts: it counts; thousands: not
    assert calibrate(logits, labels).prior_sd is None  # measured, not the default (docs/calibration.md)


def test_calibration_keeps_every_label_and_lowers_ece_on_held_out_rows():
    logits, labels = _overconfident(6000, 3, sharpen=3.0, seed=1)
    fit, held_out = slice(0, 3000), slice(3000, None)
    calibration = calibrate(logits[fit], labels[fit])
    assert calibration.fitted_on == 3000 and not calibration.note
    before, after = scaled_probs(logits[held_out]), scaled_probs(logits[held_out], calibration.temperature)
    np.testing.assert_array_equal(before.argmax(1), after.argmax(1))
    measures = calibration_metrics(logits[held_out], labels[held_out], calibration.temperature)
    assert measures["ece"] < 0.5 * measures["ece_uncalibrated"]
    assert measures["nll"] < measures["nll_uncalibrated"] and measures["brier"] < measures["brier_uncalibrated"]


def test_too_few_validation_rows_keep_temperature_one_and_say_so():
    logits, labels = _overconfident(MIN_CALIBRATION_ROWS - 1, 2, sharpen=3.0)
    calibration = calibrate(logits, labels)
    assert calibration.temperature == 1.0 and calibration.fitted_on == 0
    assert f"{MIN_CALIBRATION_ROWS - 1} texts" in calibration.note and "max_eval_samples" in calibration.note


def test_every_validation_text_right_keeps_temperature_one_and_says_so():
    labels = np.arange(200) % 2
    logits = np.stack([np.where(labels == 0, 3.0, -3.0), np.where(labels == 1, 3.0, -3.0)], axis=1)  # all right
    calibration = calibrate(logits, labels)
    assert calibration.temperature == 1.0 and "200 of 200" in calibration.note


def test_calibration_round_trips_and_a_model_saved_without_one_has_temperature_one():
    fitted = Calibration(1.37, 453)
    assert Calibration.from_dict(fitted.to_dict()) == fitted
    assert Calibration.from_dict(None).temperature == 1.0


def test_a_calibration_split_is_held_out_of_train_stratified_and_the_same_each_time():
    from bertcls.config import DataConfig
    from bertcls.data.pipeline import split_texts

    config = DataConfig(dataset="sms_spam", calibration_fraction=0.1)
    _, splits, _, stats = split_texts(config)
    _, plain, _, _ = split_texts(DataConfig(dataset="sms_spam"))
    train, held = splits["train"], splits["calibration"]
    assert len(held) == round(0.1 * len(plain["train"])) and len(train) + len(held) == len(plain["train"])
    assert not set(train["text"]) & set(held["text"])
    assert list(splits["validation"]["text"]) == list(plain["validation"]["text"])  # validation and test untouched
    assert list(splits["test"]["text"]) == list(plain["test"]["text"])
    spam_share = [np.mean([label == "spam" for label in s["label"]]) for s in (plain["train"], held)]
    assert spam_share[1] == pytest.approx(spam_share[0], abs=0.01)  # stratified
    assert "calibration" in stats.created_splits
    _, again, _, _ = split_texts(config)
    assert list(again["calibration"]["text"]) == list(held["text"])


@pytest.mark.parametrize("fraction", [-0.1, 0.6])
def test_a_calibration_fraction_out_of_range_is_refused_with_the_fix(fraction):
    from bertcls.config import DataConfig
    from bertcls.errors import ConfigError

    with pytest.raises(ConfigError, match=r"calibration_fraction .* between 0 .* and 0.5"):
        DataConfig(dataset="sms_spam", calibration_fraction=fraction)


@pytest.mark.slow  # fine-tunes (12 s): the quick lane stays under 3 minutes
def test_the_temperature_is_fitted_on_the_calibration_split_when_one_is_held_out(small_setup):
    """The fit and the logged measures name the held-out split; calibrate=false with one is refused."""
    import dataclasses

    from bertcls.errors import ConfigError
    from bertcls.train import fine_tune

    config, _, _ = small_setup
    data = dataclasses.replace(config.data, calibration_fraction=0.5, max_buckets=1)
    config = dataclasses.replace(config, data=data, epochs=1)
    tuned = fine_tune.fine_tune(config, progress_bar=False)
    held = tuned.setup.data.splits["calibration"]
    assert held.num_texts == 128 and tuned.setup.data.splits["train"].num_texts == 128  # max_train_samples 256, half
    assert tuned.calibration.fitted_split == "calibration"
    assert tuned.calibration.fitted_on in (0, held.num_texts)  # 0: refused, with the split named in its note
    assert tuned.calibration.fitted_on or "calibration split" in tuned.calibration.note
    if tuned.calibration.fitted_on:
        outputs = fine_tune.predict_split(
            tuned.setup.trainer, held, tuned.setup.data.task, config.eval_batch_size, tuned.setup.data.buckets
        )
        assert tuned.calibration.temperature == pytest.approx(fit_temperature(outputs.outputs, outputs.labels))
    assert {"calibration_ece", "calibration_ece_uncalibrated", "test_ece"} <= set(tuned.metrics)
    with pytest.raises(ConfigError, match="calibrate=false fits none"):
        fine_tune.prepare(dataclasses.replace(config, calibrate=False))


@pytest.mark.slow  # fine-tunes (12 s): the quick lane stays under 3 minutes
def test_multi_label_thresholds_and_temperatures_are_fitted_on_the_calibration_split(small_model_dir):
    from bertcls.config import DataConfig, TrainConfig
    from bertcls.train import fine_tune

    data = DataConfig(
        dataset="goemotions", max_train_samples=128, max_eval_samples=64, max_buckets=1, calibration_fraction=0.5
    )
    config = TrainConfig(model=str(small_model_dir), epochs=1, batch_size=32, eval_batch_size=32, data=data)
    tuned = fine_tune.fine_tune(config, progress_bar=False)
    assert tuned.setup.data.splits["calibration"].num_texts == 64
    assert tuned.calibration.fitted_split == "calibration" and tuned.calibration.fitted_on == 64
    assert len(tuned.calibration.thresholds) == 28 and "calibration_ece" in tuned.metrics
    assert "calibration texts" in tuned.calibration.note  # 64 texts: most labels too rare to tune, said so
