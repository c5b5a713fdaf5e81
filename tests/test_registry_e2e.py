"""evaluate + register on a real sqlite tracking store; serving through `mlflow models serve` on loopback."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from bertcls.errors import BertclsError
from bertcls.jobs import evaluate as evaluate_job
from bertcls.jobs import register as register_job
from tests import e2e

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("registry_e2e")]  # one xdist worker: fixtures train once
EXPERIMENT = "registry-e2e"
METRIC = "val_mcc"


class Store:
    def __init__(self, root: Path, model_dir: Path, template: Path):
        self.root, self.model_dir = root, model_dir
        shutil.copy(template, root / "mlflow.db")  # an empty, migrated store
        self.uri = f"sqlite:///{root / 'mlflow.db'}"
        self.client = MlflowClient(self.uri)
        self.client.create_experiment(EXPERIMENT, artifact_location=str(root / "artifacts"))

    def train(self, lr: str, **extra) -> str:
        """A real training run of `bertcls train`, in this process (the registry is the point here, not the
        interpreter: `mlflow run` trainings are tests/test_train_e2e.py's); returns its run id."""
        options = {"max_train_samples": 300, "max_eval_samples": 100, "epochs": 2, "max_buckets": 2, **extra}
        return e2e.train_here(self.uri, EXPERIMENT, self.model_dir, head="mean", lr=lr, **options)


@pytest.fixture(scope="module")
def store(tmp_path_factory, small_model_dir, store_template):
    root = tmp_path_factory.mktemp("registry")
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    made = Store(root, small_model_dir, store_template)
    os.environ["MLFLOW_TRACKING_URI"] = made.uri
    mlflow.set_tracking_uri(made.uri)
    made.good = made.train("5e-4")
    made.bad = made.train("1e-7")
    yield made
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous


def _history(client, name):
    tags = client.get_registered_model(name).tags
    return [json.loads(tags[k]) for k in sorted(tags) if k.startswith("alias_history.")]


def _crashed_run(client, better_than: float) -> str:
    """A run left RUNNING by a killed process, with a better metric and a model tag than any real run."""
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    run = client.create_run(experiment_id, tags={"bertcls_job": "train", "model_uri": "models:/m-gone"})
    client.log_metric(run.info.run_id, "best_val_mcc", min(1.0, better_than + 0.5))
    return run.info.run_id


def test_gated_promotion_flow(store, monkeypatch):
    client = store.client
    good_value = client.get_run(store.good).data.metrics["best_val_mcc"]
    assert good_value > client.get_run(store.bad).data.metrics["best_val_mcc"]

    first = register_job.register(EXPERIMENT, METRIC)
    name = first.name
    assert name == "bertcls-sms_spam" and first.alias == "champion"
    champion = client.get_model_version_by_alias(name, "champion")
    assert champion.run_id == store.good
    assert champion.tags["source_run_id"] == store.good and float(champion.tags["metric_value"]) == good_value

    again = register_job.register(EXPERIMENT, METRIC)  # nothing new since the champion: no second version
    assert again.alias is None and len(client.search_model_versions(f"name = '{name}'")) == 1

    crashed = _crashed_run(client, better_than=good_value)  # RUNNING forever: never a candidate
    assert register_job.register(EXPERIMENT, METRIC).alias is None
    assert client.get_model_version_by_alias(name, "champion").run_id not in (crashed, None)

    worse = store.train("1e-6")
    third = register_job.register(EXPERIMENT, METRIC)
    assert third.alias == "challenger"
    assert client.get_model_version_by_alias(name, "challenger").run_id == worse
    assert client.get_model_version_by_alias(name, "champion").run_id == store.good

    same = register_job.register(EXPERIMENT, METRIC, run_id=worse)  # the same run twice: the same version
    assert same.version == third.version and not same.created
    assert len(client.search_model_versions(f"name = '{name}'")) == 2

    forced = register_job.register(EXPERIMENT, METRIC, run_id=worse, force=True)
    assert forced.alias == "champion" and "forced" in forced.message
    assert client.get_model_version_by_alias(name, "champion").run_id == worse

    # A run on other evaluation data is not comparable by logged figures: both models are evaluated.
    other = store.train("5e-4", max_eval_samples=60)
    # as under `mlflow run -e register`: the job's own run is in MLFLOW_RUN_ID; evaluations get runs of their own
    job_run = client.create_run(client.get_experiment_by_name(EXPERIMENT).experiment_id).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", job_run)
    evaluated = register_job.register(EXPERIMENT, METRIC, run_id=other)
    monkeypatch.delenv("MLFLOW_RUN_ID")
    assert evaluated.alias == "champion" and "evaluated" in evaluated.message
    job = client.get_run(job_run)
    assert job.data.tags["bertcls_job"] == "register" and job.data.metrics == {} and job.info.status == "RUNNING"

    # ... and a worse run on yet other evaluation data (80 examples, the champion's are 60) loses on the
    # evaluated figures: challenger, champion stays
    worse_other = store.train("1e-7", max_eval_samples=80)
    lost = register_job.register(EXPERIMENT, METRIC, run_id=worse_other)
    assert lost.alias == "challenger" and "evaluated" in lost.message, lost.message
    assert client.get_model_version_by_alias(name, "champion").run_id == other

    history = _history(client, name)
    assert [h["alias"] for h in history] == ["champion", "challenger", "champion", "champion", "challenger"]
    assert [h["reason"] for h in history] == [
        "first champion",
        "did not beat the champion",
        "forced",
        "beat the champion",
        "did not beat the champion",
    ]
    assert history[2]["from_version"] == first.version and history[3]["basis"] == "evaluated"
    assert history[4]["basis"] == "evaluated" and history[4]["candidate_value"] < history[4]["champion_value"]
    for entry in history:
        assert {"time", "by", "metric", "to_version"} <= entry.keys()


def test_evaluate_reproduces_train_test_metrics(store):
    error_rate = Path(__file__).parent / "assets" / "error_rate" / "error_rate.py"  # a local `evaluate` module
    outcome = evaluate_job.evaluate(f"runs:/{store.good}/model", split="test", extra_metrics=(str(error_rate),))
    assert outcome.metrics["test_error_rate"] == pytest.approx(1 - outcome.metrics["test_accuracy"])
    logged = store.client.get_run(store.good).data.metrics
    for key in ("test_accuracy", "test_mcc", "test_macro_f1", "test_f1"):
        assert outcome.metrics[key] == pytest.approx(logged[key], abs=1e-12), key
    assert outcome.metrics["test_loss"] == pytest.approx(logged["test_loss"], rel=1e-4)
    run = store.client.get_run(outcome.run_id)
    assert run.data.tags["evaluated_model_uri"] == f"runs:/{store.good}/model"
    assert run.data.tags["source_run_id"] == store.good and run.data.metrics["predict_texts_per_s"] > 0
    artifacts = {a.path for a in store.client.list_artifacts(outcome.run_id)}
    assert {"per_class_metrics.json", "most_confident_mistakes.json", "figures"} <= artifacts
    table = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(run_id=outcome.run_id, artifact_path="per_class_metrics.json")
        ).read_text()
    )
    assert table["columns"] == ["label", "precision", "recall", "f1", "support"]


def test_serve_champion_over_rest(store):
    client = store.client
    name = "bertcls-serve"
    register_job.register(EXPERIMENT, METRIC, name=name, run_id=store.good)
    with e2e.served(store.uri, f"models:/{name}@champion") as port:
        texts = ["WINNER!! claim your free cash prize, call 09061701461 now", "see you at lunch tomorrow"]
        status, reply = e2e.post(port, {"inputs": texts})
        assert status == 200, reply
        predictions = reply["predictions"]
        assert [p["label"] for p in predictions] == ["spam", "ham"]
        assert all(abs(p["prob_ham"] + p["prob_spam"] - 1) < 1e-6 for p in predictions)

        # records: the text column is read by name wherever it stands, never the first column
        status, records = e2e.post(port, {"dataframe_records": [{"id": "7", "text": "see you at lunch tomorrow"}]})
        assert status == 200 and records["predictions"][0]["prob_ham"] == pytest.approx(predictions[1]["prob_ham"])
        for bad, message in (
            ({"dataframe_records": [{"id": "7", "body": "free entry"}]}, "expected 'text', received 'id', 'body'"),
            ({"inputs": ["fine", None]}, "row (0-based) 1 (null)"),
            ({"inputs": [3]}, "row (0-based) 0 (int 3)"),
        ):
            status, reply = e2e.post(port, bad)
            assert status == 400 and message in reply["message"], (status, reply)
    assert client.get_model_version_by_alias(name, "champion").run_id == store.good


def test_labels_mismatch(store):
    with pytest.raises(BertclsError, match="model's labels \\(ham, spam\\) do not match"):
        evaluate_job.evaluate(
            f"runs:/{store.good}/model", data_overrides={"dataset": "bbc_news", "max_eval_samples": 20}
        )
