"""focal_gamma: the focal loss of Lin et al. (2017) for classes, tags and label sets; 0 is the plain loss."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from bertcls.config import TrainConfig
from bertcls.errors import ConfigError
from bertcls.train.steps import Objective, weighted_loss

RNG = np.random.default_rng(0)
LOGITS = RNG.normal(scale=3.0, size=(16, 4)).astype(np.float32)  # [B, C], confident and unconfident rows
LABELS = RNG.integers(0, 4, size=16)  # [B]
ONES = np.ones(16, np.float32)


def _focal_reference(logits: np.ndarray, labels: np.ndarray, gamma: float) -> np.ndarray:
    """[B] -(1 - p_t)^gamma log p_t in float64, from the paper's definition."""
    p_true = special.softmax(logits.astype(np.float64), axis=-1)[np.arange(len(labels)), labels]
    return -((1.0 - p_true) ** gamma) * np.log(p_true)


def _loss(outputs, labels, weights, objective) -> float:
    total, weight = weighted_loss(jnp.asarray(outputs), jnp.asarray(labels), jnp.asarray(weights), objective)
    return float(total / weight)


@pytest.mark.parametrize("gamma", [0.5, 2.0, 5.0])
def test_focal_loss_of_classes_is_the_papers_definition(gamma):
    ours = _loss(LOGITS, LABELS, ONES, Objective("cross_entropy", focal_gamma=gamma))
    np.testing.assert_allclose(ours, _focal_reference(LOGITS, LABELS, gamma).mean(), rtol=1e-5)


def test_gamma_zero_is_the_plain_cross_entropy_and_focusing_lowers_confident_rows_most():
    plain = _focal_reference(LOGITS, LABELS, 0.0)
    np.testing.assert_allclose(_loss(LOGITS, LABELS, ONES, Objective("cross_entropy")), plain.mean(), rtol=1e-5)
    focal = _focal_reference(LOGITS, LABELS, 2.0)
    p_true = np.exp(-plain)
    kept = focal / plain  # (1 - p_t)^2: the share of its loss each row keeps
    assert kept[p_true.argmax()] < kept[p_true.argmin()]
    np.testing.assert_allclose(
        _loss(LOGITS, LABELS, ONES, Objective("cross_entropy", focal_gamma=2.0)), focal.mean(), rtol=1e-5
    )


def test_focal_loss_stays_finite_where_the_model_is_certain():
    logits = np.array([[60.0, -60.0], [-60.0, 60.0]], np.float32)  # p_true = 1 to float32 precision
    loss = _loss(logits, np.array([0, 0]), np.ones(2, np.float32), Objective("cross_entropy", focal_gamma=2.0))
    assert np.isfinite(loss) and loss > 0  # the wrong row carries the loss


def test_focal_loss_of_tags_skips_unlabelled_positions():
    logits = LOGITS.reshape(2, 8, 4)  # [B, S, C]
    tags = LABELS.reshape(2, 8).copy()
    tags[:, 5:] = -100  # padding and later subwords
    ours = _loss(logits, tags, np.ones(2, np.float32), Objective("cross_entropy", focal_gamma=2.0))
    reference = _focal_reference(logits[:, :5].reshape(-1, 4), tags[:, :5].reshape(-1), 2.0).mean()
    np.testing.assert_allclose(ours, reference, rtol=1e-5)


def test_focal_loss_of_label_sets_scales_each_labels_terms_by_its_own_p_t():
    logits = LOGITS  # [B, L]
    multi_hot = (RNG.random((16, 4)) < 0.3).astype(np.float32)
    pos_weight = (2.0, 1.0, 0.5, 3.0)
    ours = _loss(logits, multi_hot, ONES, Objective("binary_cross_entropy", pos_weight, focal_gamma=2.0))
    p = special.expit(logits.astype(np.float64))
    positive = -multi_hot * (1 - p) ** 2 * np.log(p) * np.asarray(pos_weight)
    negative = -(1 - multi_hot) * p**2 * np.log(1 - p)
    np.testing.assert_allclose(ours, (positive + negative).mean(), rtol=1e-5)


@pytest.mark.parametrize("gamma", [-1.0, float("nan"), float("inf")])
def test_a_bad_gamma_is_refused_when_the_config_is_made(gamma):
    with pytest.raises(ConfigError, match="focal_gamma must be a finite number >= 0"):
        TrainConfig(focal_gamma=gamma)
