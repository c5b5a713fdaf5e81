"""Multi-label end to end: `mlflow run . -e train -P dataset=goemotions` on a slice of the bundled GoEmotions
(1-layer MiniLM, head=linear so it exports), then register by val_micro_f1, load @champion, read label sets with
per-label probabilities, move the threshold and see the sets move, serve with the threshold as a request param,
evaluate and export."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from bertcls.jobs import evaluate as evaluate_job
from bertcls.jobs import export as export_job
from bertcls.jobs import register as register_job
from tests import e2e

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("multilabel_e2e")]
ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT = "multilabel"
SLICE = {
    "max_train_samples": 1500,
    "max_eval_samples": 300,
    "max_buckets": 3,
    "epochs": 2,
    "lr": "1e-3",
    "head": "linear",
}
TEXTS = [
    "Thank you so much, this is the nicest thing anyone has done for me!",
    "I can't believe they did that. I'm furious.",
    "Why would anyone think that? I don't get it.",
    "lol that is hilarious 😂",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_model_dir, store_template):
    """One `mlflow run` train on GoEmotions, its run, and the store it logged to."""
    root = tmp_path_factory.mktemp("multilabel")
    with e2e.mlflow_run_train(
        root, store_template, EXPERIMENT, {"dataset": "goemotions", "model": small_model_dir, **SLICE}
    ) as (uri, run):
        yield root, uri, run


def test_the_run_logs_multilabel_metrics_thresholds_and_calibration(trained):
    _, uri, run = trained
    client = MlflowClient(uri)
    assert run.info.status == "FINISHED"
    assert run.data.params["task_kind"] == "multilabel" and run.data.params["primary_metric"] == "micro_f1"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_micro_f1")] == [1, 2]
    metrics = run.data.metrics
    for name in ("test_micro_f1", "test_macro_f1", "test_subset_accuracy", "test_average_precision", "test_f1_joy"):
        assert 0 <= metrics[name] <= 1
    assert metrics["test_ece"] < metrics["test_ece_uncalibrated"]  # per-label temperatures fitted on validation
    calibration = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/calibration.json")
    assert len(calibration["thresholds"]) == 28 and len(calibration["temperatures"]) == 28
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"val_per_label_metrics.json", "test_per_label_metrics.json"} <= artifacts
    assert "figures/test_reliability.png" in {a.path for a in client.list_artifacts(run.info.run_id, "figures")}


def test_champion_predicts_label_sets_and_the_threshold_moves_them(trained):
    _, _, run = trained
    # The tiny slice's 1-layer model does not beat always answering "neutral" (micro-F1 ~0.3): the gate says so,
    # and a forced registration then makes it @champion, as a user would to try the served model.
    refused = register_job.register(EXPERIMENT, name="emotions", dataset="goemotions")  # unset: val_micro_f1
    if refused.alias is None:
        assert "learned nothing" in refused.message
        outcome = register_job.register(EXPERIMENT, "val_micro_f1", name="emotions", dataset="goemotions", force=True)
    else:
        outcome = refused
    assert outcome.alias == "champion"
    assert MlflowClient().get_model_version("emotions", outcome.version).tags["metric"] == "best_val_micro_f1"
    model = mlflow.pyfunc.load_model("models:/emotions@champion")
    answer = model.predict(TEXTS)
    probs = answer[[c for c in answer.columns if c.startswith("prob_")]].to_numpy()  # [T, 28]
    assert probs.shape == (4, 28) and ((probs > 0) & (probs < 1)).all()
    names = [c.removeprefix("prob_") for c in answer.columns if c.startswith("prob_")]
    saved = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/calibration.json")["thresholds"]
    for row, labels in enumerate(answer["labels"]):  # the set is every label at or above its saved threshold
        assert labels == [n for i, n in enumerate(names) if probs[row, i] >= saved[i]]
    low, high = model.predict(TEXTS, params={"threshold": 0.02}), model.predict(TEXTS, params={"threshold": 0.5})
    assert sum(map(len, low["labels"])) > sum(map(len, high["labels"]))  # a lower threshold: more labels
    cut = float(np.median(probs))
    moved = model.predict(TEXTS, params={"threshold": cut})
    for row, labels in enumerate(moved["labels"]):
        assert labels == [n for i, n in enumerate(names) if probs[row, i] >= cut]
    raw = model.predict(TEXTS, params={"calibrated": False})
    assert list(raw["labels"]) == list(answer["labels"])  # thresholds follow the probabilities to the raw scale


def test_rest_serving_takes_the_threshold_param_and_refuses_a_bad_one(trained):
    _, uri, run = trained
    with e2e.served(uri, f"runs:/{run.info.run_id}/model") as port:
        status, reply = e2e.post(port, {"inputs": TEXTS[:2], "params": {"threshold": 0.0}})
        assert status == 200 and all(len(row["labels"]) == 28 for row in reply["predictions"])
        status, reply = e2e.post(port, {"inputs": TEXTS[:2], "params": {"threshold": 1.5}})
        assert status == 400 and "between 0 and 1" in reply["message"]


def test_evaluate_and_export_a_multilabel_model(trained):
    root, uri, run = trained
    outcome = evaluate_job.evaluate(f"runs:/{run.info.run_id}/model", split="test", experiment=EXPERIMENT)
    assert outcome.metrics["test_micro_f1"] == pytest.approx(run.data.metrics["test_micro_f1"], abs=1e-6)
    assert outcome.metrics["test_ece"] == pytest.approx(run.data.metrics["test_ece"], abs=1e-6)
    exported = export_job.export(f"runs:/{run.info.run_id}/model", str(root / "hf"))
    config = json.loads((exported.directory / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification" and len(config["id2label"]) == 28
