"""Bad register / evaluate input: one paragraph, exit 2, no traceback; on a real store with no training."""

from __future__ import annotations

import re

import mlflow
import pytest
from click.testing import CliRunner

from bertcls.cli import main


@pytest.fixture
def store(empty_store, tmp_path):
    """Experiment `runs` holds one finished training run record (metric best_val_mcc) and one register run."""
    client = mlflow.MlflowClient(empty_store)
    experiment = client.create_experiment("runs", artifact_location=str(tmp_path / "artifacts"))
    client.create_experiment("empty", artifact_location=str(tmp_path / "artifacts-empty"))
    trained = client.create_run(experiment, tags={"bertcls_job": "train", "model_uri": "models:/m-1", "dataset": "sms"})
    client.log_metric(trained.info.run_id, "best_val_mcc", 0.5)
    client.set_terminated(trained.info.run_id, "FINISHED")
    registering = client.create_run(experiment, tags={"bertcls_job": "register"})
    client.set_terminated(registering.info.run_id, "FINISHED")
    return client, registering.info.run_id


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["register", "--experiment", "nope"], "No experiment named 'nope'.*Experiments there: .*runs"),
        (["register", "--experiment", "empty"], "has no FINISHED training runs"),
        (["register", "--experiment", "runs", "--metric", "val_bleu"], "No finished run .* logged the metric"),
        (["register", "--experiment", "runs", "--name", "team/spam"], "Names cannot contain '/' or ':'.* --name"),
        (["evaluate", "--model-uri", "runs:/abc"], "Malformed model URI 'runs:/abc'"),
        (["evaluate", "--model-uri", "s3://bucket/model"], "Malformed model URI"),
        (["evaluate", "--model-uri", "runs:/0123456789abcdef0123456789abcdef/model"], "not found"),
        (["evaluate", "--model-uri", "models:/no-such-model@champion"], "not found"),
    ],
)
def test_bad_input(store, args, message):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and re.search(message, result.output), result.output


def test_a_register_run_is_never_a_candidate(store):
    _, register_run = store
    result = CliRunner().invoke(main, ["register", "--experiment", "runs", "--run-id", register_run])
    assert result.exit_code == 2 and "only training runs can be registered" in result.output, result.output


def test_runs_on_several_datasets_are_not_ranked_together(store):
    """A data.csv run must not become a version of bertcls-sms_spam: without a dataset, register asks for one."""
    client, _ = store
    experiment = client.get_experiment_by_name("runs").experiment_id
    trained = client.create_run(
        experiment, tags={"bertcls_job": "train", "model_uri": "models:/m-2", "dataset": "data.csv"}
    )
    client.log_metric(trained.info.run_id, "best_val_mcc", 0.9)
    client.set_terminated(trained.info.run_id, "FINISHED")
    result = CliRunner().invoke(main, ["register", "--experiment", "runs", "--metric", "val_mcc"])
    assert result.exit_code == 2 and "training runs on several datasets (data.csv, sms)" in result.output, result.output
    assert "--dataset" in result.output and "Traceback" not in result.output


def test_a_metric_of_unknown_direction_is_refused_and_a_given_direction_ranks(store):
    """No guessing which way is better (error metrics ranked higher-is-better promoted the worst run)."""
    client, _ = store
    experiment = client.get_experiment_by_name("runs").experiment_id
    run_id = client.search_runs([experiment], "tags.bertcls_job = 'train'")[0].info.run_id
    client.log_metric(run_id, "best_val_bleu", 0.3)
    result = CliRunner().invoke(main, ["register", "--experiment", "runs", "--metric", "val_bleu"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "does not know whether a higher or a lower 'best_val_bleu' is better" in " ".join(result.output.split())
    assert "--direction max" in result.output and client.search_registered_models() == []
    result = CliRunner().invoke(main, ["register", "--experiment", "runs", "--metric", "val_bleu", "--direction", "up"])
    assert result.exit_code == 2 and "direction must be max" in result.output, result.output


def test_a_run_no_better_than_always_answering_the_majority_class_is_not_registered(store):
    """A constant model (always "ham": validation MCC 0, the baseline's) took @champion with no word (issue 22)."""
    client, _ = store
    experiment = client.get_experiment_by_name("runs").experiment_id
    run_id = client.search_runs([experiment], "tags.bertcls_job = 'train'")[0].info.run_id
    client.log_metric(run_id, "baseline_val_mcc", 0.5)  # the run's best_val_mcc is 0.5: no better
    result = CliRunner().invoke(main, ["register", "--experiment", "runs", "--metric", "val_mcc"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "Not registered" in said and "does not beat the majority-class baseline" in said and "--force" in said
    assert "load it with" not in said  # no champion exists to load (it used to print the snippet anyway)
    assert client.search_registered_models() == []


def _tagger_run(client, experiment: str, f1: float, accuracy: float) -> str:
    run = client.create_run(experiment, tags={"bertcls_job": "train", "model_uri": "models:/m-3", "dataset": "sms"})
    client.log_param(run.info.run_id, "primary_metric", "f1")
    client.log_metric(run.info.run_id, "best_val_f1", f1)
    client.log_metric(run.info.run_id, "best_val_accuracy", accuracy)
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def test_unset_metric_ranks_by_the_runs_primary_metric_and_refuses_a_mix_of_tasks(store):
    """Word taggers ranked by val_accuracy (words, mostly O) picked the wrong run unless told val_f1 (issue 26)."""
    from bertcls.tracking import registry

    client, _ = store
    experiment = client.get_experiment_by_name("runs").experiment_id
    tagger = client.create_experiment("taggers")
    better_entities = _tagger_run(client, tagger, f1=0.72, accuracy=0.940)
    _tagger_run(client, tagger, f1=0.60, accuracy=0.950)  # more words right, fewer entities
    assert registry.best_run(client, "taggers", None).run_id == better_entities
    assert registry.best_run(client, "taggers", None).metric_key == "best_val_f1"
    assert registry.candidate_from_run(client, better_entities, None).metric_key == "best_val_f1"
    _tagger_run(client, experiment, f1=0.7, accuracy=0.9)  # beside the classifier run (primary: accuracy)
    result = CliRunner().invoke(main, ["register", "--experiment", "runs"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    said = " ".join(result.output.split())
    assert "ranked by different primary metrics (sms: val_accuracy, val_f1)" in said and "--dataset" in said, said
    assert client.search_registered_models() == []
