"""A model logged by an earlier bertcls still loads and answers the same (issue 23: the modules move).

`tests/assets/premove_model.tar.gz` is an MLflow logged model as a user's store holds it, made by bertcls at
commit 7108e02 (before the house move): a 1-layer, 32-wide BERT with a 1,000-token WordPiece vocabulary and
random weights (seed 7), logged through `tracking.log_model` and downloaded with `mlflow.artifacts`; its
answers to four texts were recorded at the same time (`premove_model_predictions.json`). Two readers: MLflow's
loader (the model's own bundled code), and today's `Predictor` on the saved model inside it (today's code on
the old format).
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

ASSETS = Path(__file__).resolve().parent / "assets"
EXPECTED = json.loads((ASSETS / "premove_model_predictions.json").read_text())


@pytest.fixture(scope="module")
def premove_model(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("premove")
    with tarfile.open(ASSETS / "premove_model.tar.gz") as archive:
        archive.extractall(root, filter="data")
    return root / "premove_model"


def _probabilities(frame) -> np.ndarray:  # [N, 2]
    return np.stack([np.asarray(frame["prob_ham"], float), np.asarray(frame["prob_spam"], float)], axis=1)


def test_a_model_logged_before_the_move_loads_through_mlflow_and_answers_the_same(premove_model):
    import mlflow

    frame = mlflow.pyfunc.load_model(str(premove_model)).predict(EXPECTED["texts"])
    assert list(frame["label"]) == EXPECTED["labels"]
    expected = np.stack([EXPECTED["prob_ham"], EXPECTED["prob_spam"]], axis=1)
    np.testing.assert_allclose(_probabilities(frame), expected, rtol=0, atol=1e-6)


def test_todays_predictor_reads_the_old_saved_model_and_answers_the_same(premove_model):
    from bertcls.serving.predictor import Predictor

    predictor = Predictor.from_dir(premove_model / "artifacts" / "saved")
    logits = np.asarray(predictor.predict(EXPECTED["texts"]), np.float64)  # [N, 2]
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    expected = np.stack([EXPECTED["prob_ham"], EXPECTED["prob_spam"]], axis=1)
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-6)
