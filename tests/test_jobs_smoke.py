"""The whole train job in-process on a tiny slice (fast lane), and evaluate reading texts as the model says.

The train job (`bertcls.jobs.train`) runs for real: 1-layer MiniLM, a CSV of real SMS texts, a temp sqlite store. The
`mlflow run` end-to-end tests (slow) cover the same job through subprocesses.
"""

from __future__ import annotations

import dataclasses
import json

import mlflow
import pytest
from mlflow import MlflowClient

from bertcls.config import DataConfig, OptimConfig, TrainConfig
from bertcls.config.saved import train_config_to_dict
from bertcls.data.reading import ReadingSettings
from bertcls.jobs import evaluate as evaluate_job
from bertcls.jobs import train as train_job
from bertcls.tracking import artifacts, runs
from bertcls.tracking.epoch_models import EpochModels
from bertcls.tracking.registry import resolve_model_uri


def test_train_job_in_process_then_evaluate_reads_texts_as_the_model_was_trained(empty_store, small_model_dir, sms_csv):
    config = TrainConfig(
        model=str(small_model_dir),
        data=DataConfig(train_file=str(sms_csv), max_seq_length=32, max_buckets=1),
        epochs=1,
        batch_size=16,
        eval_batch_size=16,
    )
    mlflow.create_experiment("smoke")
    outcome = train_job.train(config, experiment="smoke")
    client = MlflowClient()
    run = client.get_run(outcome.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["dataset"] == "sms.csv"
    assert run.data.params["head"] == "mean" and run.data.params["max_seq_length"] == "32"
    # the majority-class baseline `register` compares with: logged, and what always answering "ham" scores
    assert 0.5 < run.data.metrics["baseline_val_accuracy"] < 1 and run.data.metrics["baseline_val_mcc"] == 0.0
    saved = mlflow.artifacts.load_dict(f"runs:/{outcome.run_id}/bertcls/train_config.json")
    assert saved == json.loads(json.dumps(train_config_to_dict(config)))  # files were absolute already

    model_dir = resolve_model_uri(f"runs:/{outcome.run_id}/model").local_dir
    meta = json.loads((model_dir / "bertcls_config.json").read_text())
    reading = ReadingSettings.from_dict(meta["reading_settings"])
    assert reading.max_seq_length == 32 and reading.label_names == ("ham", "spam") and reading.long_text == "truncate"

    evaluated = evaluate_job.evaluate(f"runs:/{outcome.run_id}/model", split="test", experiment="smoke")
    assert evaluated.metrics["test_accuracy"] == pytest.approx(run.data.metrics["test_accuracy"], abs=1e-12)

    # The same model logged by a run whose params say otherwise (and with no config artifact): the model's
    # own settings decide how texts are read, so the figures are the same.
    with runs.tracked_run("smoke") as other:
        mlflow.log_params({"max_seq_length": "8", "long_text": "windows", "max_windows": "2"})
        mlflow.set_tag("model_uri", artifacts.log_model(model_dir, ["free entry"], None).model_uri)
    again = evaluate_job.evaluate(
        f"runs:/{other.info.run_id}/model",
        split="test",
        data_overrides={"train_file": str(sms_csv)},
        experiment="smoke",
    )
    assert again.metrics["test_accuracy"] == evaluated.metrics["test_accuracy"]
    assert again.metrics["test_loss"] == pytest.approx(evaluated.metrics["test_loss"], rel=1e-6)
    logged = client.get_run(again.run_id).data.params
    assert logged["max_seq_length"] == "32" and logged["long_text"] == "truncate"


def test_reading_settings_round_trip_and_refuse_a_newer_version():
    settings = ReadingSettings("classification", ("a", "b"), "accuracy", 64, (16, 64), False, "windows", 16, 4)
    assert ReadingSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    assert settings.windows == (16, 4)
    assert settings.data_fields() == {
        "max_seq_length": 64,
        "long_text": "windows",
        "window_overlap": 16,
        "max_windows": 4,
        "tag_decoding": "viterbi",  # a model saved before it: its default (its empty tag_scheme decodes by argmax)
    }
    from bertcls.errors import CheckpointError

    with pytest.raises(CheckpointError, match="newer than this bertcls reads"):
        ReadingSettings.from_dict({**settings.to_dict(), "version": 99})


def test_train_config_round_trips_and_old_runs_are_read_from_their_params():
    from bertcls.config.saved import train_config_from_dict, train_config_from_params

    config = TrainConfig(
        data=DataConfig(train_file="/data/a.csv", max_train_samples=200), epochs=5, optim=OptimConfig(lr=5e-5)
    )
    assert train_config_from_dict(json.loads(json.dumps(train_config_to_dict(config)))) == config
    # what `mlflow run` logged for such a run: MLproject's spellings of unset and floats for ints
    params = {
        "epochs": "5.0",
        "train_file": "/data/a.csv",
        "max_train_samples": "200.0",
        "max_eval_samples": "0",
        "text_column": "none",
        "validation_file": "/dev/null",
        "head": "mean",
        "lr": "5e-05",
    }
    assert train_config_from_params(params) == dataclasses.replace(config)


@pytest.mark.slow
def test_partial_finetune_through_the_job_logs_a_model_whose_frozen_weights_are_the_checkpoints(
    empty_store, small_model_dir, sms_csv, monkeypatch
):
    """finetune=partial, freeze_layers=1 on the 1-layer model: only the head trains, end to end through the job,
    the logged model; the run records the split of parameters and the optimizer state it needed. With
    gradient accumulation (2 x 8) and system metrics (sampled every second here) on the way."""
    import numpy as np
    from flax import nnx

    from bertcls.model.config import ModelConfig
    from bertcls.model.weights import load_hf_checkpoint, load_model

    config = TrainConfig(
        model=str(small_model_dir),
        data=DataConfig(train_file=str(sms_csv), max_seq_length=32, max_buckets=1),
        epochs=1,
        batch_size=8,
        grad_accum_steps=2,
        eval_batch_size=16,
        finetune="partial",
        freeze_layers=1,
    )
    mlflow.create_experiment("strategies")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    outcome = train_job.train(config, experiment="strategies", system_metrics=True)
    run = MlflowClient().get_run(outcome.run_id)
    params = run.data.params
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(run.data.metrics)
    assert params["finetune"] == "partial" and params["freeze_layers"] == "1" and params["llrd"] == "1.0"
    assert params["grad_accum_steps"] == "2" and params["effective_batch_size"] == "16"
    assert int(params["trainable_params"]) == 384 * 2 + 2 and int(params["frozen_params"]) > 1_000_000

    trained, _ = load_model(resolve_model_uri(f"runs:/{outcome.run_id}/model").local_dir)
    arch = ModelConfig.from_json_file(small_model_dir / "config.json", head="mean", num_labels=2)
    original, _ = load_hf_checkpoint(small_model_dir, arch, seed=config.seed)

    def flat(model) -> dict[str, np.ndarray]:
        state = nnx.to_flat_state(nnx.state(model, nnx.Param))
        return {".".join(map(str, path)): np.asarray(v.get_value()) for path, v in state}

    after, before = flat(trained), flat(original)
    encoder = [name for name in before if name.startswith("encoder.")]
    assert encoder and all(np.array_equal(after[name], before[name]) for name in encoder)
    assert not np.array_equal(after["head.output.kernel"], before["head.output.kernel"])


@pytest.mark.slow
def test_every_epoch_checkpoint_is_a_logged_model_linked_to_its_validation_metrics(
    empty_store, small_model_dir, sms_csv
):
    """log_checkpoints=all, keep_checkpoints=1 over 3 epochs: each epoch's checkpoint is logged with its epoch's
    val_* metrics (and the validation dataset), then beyond one other than the best the oldest is deleted; the final
    `model` is linked to the best epoch; a checkpoint loads by models:/<model_id> and predicts."""
    import pandas as pd

    config = TrainConfig(
        model=str(small_model_dir),
        data=DataConfig(train_file=str(sms_csv), max_seq_length=32, max_buckets=1),
        epochs=3,
        batch_size=16,
        eval_batch_size=16,
        log_checkpoints="all",
        keep_checkpoints=1,
        optim=OptimConfig(lr=1e-3),
    )
    experiment = mlflow.create_experiment("checkpoints")
    outcome = train_job.train(config, experiment="checkpoints", system_metrics=False)
    client = MlflowClient()
    models = mlflow.search_logged_models(experiment_ids=[experiment], output_format="list")
    by_name = {m.name: m for m in models if m.source_run_id == outcome.run_id}
    best = f"checkpoint-epoch-{outcome.best_epoch}"
    kept = {best, "checkpoint-epoch-3"} | ({"checkpoint-epoch-2"} if outcome.best_epoch == 3 else set())
    assert set(by_name) == kept | {"model"}, (outcome.best_epoch, sorted(by_name))
    history = client.get_metric_history(outcome.run_id, "val_accuracy")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2, 3]  # each epoch once, not twice
    for name in kept:
        epoch = int(name.rsplit("-", 1)[1])
        linked = {m.key: m for m in by_name[name].metrics}
        assert {"val_accuracy", "val_loss", "val_mcc"} <= set(linked), linked
        assert linked["val_accuracy"].step == epoch and linked["val_accuracy"].dataset_name == "sms.csv"
        assert linked["val_accuracy"].value == next(m.value for m in history if m.step == epoch)
    final = {m.key: m for m in by_name["model"].metrics}
    assert final["best_val_accuracy"].step == outcome.best_epoch and "test_accuracy" in final
    checkpoint = mlflow.pyfunc.load_model(f"models:/{by_name[best].model_id}")
    predicted = checkpoint.predict(pd.DataFrame({"text": ["WINNER! claim your prize now", "see you at lunch"]}))
    assert list(predicted["label"]) and set(predicted["label"]) <= {"ham", "spam"}


def test_keep_checkpoints_keeps_the_best_epoch_however_old_and_deletes_the_oldest_other(empty_store):
    """keep_checkpoints=1 over validation accuracies 0.9, 0.7, 0.8, 0.6: the best (epoch 1) stays to the end, and
    of the others only the newest; each deleted one is deleted in the store (real MLflow logged models)."""
    config = TrainConfig(log_checkpoints="all", keep_checkpoints=1)
    experiment = mlflow.create_experiment("keep")

    def log_model(state, name, step, metrics):
        return mlflow.initialize_logged_model(name=name, experiment_id=experiment)

    checkpoints = EpochModels(config.keep_checkpoints, "accuracy", log_model)
    ids = [checkpoints.log(epoch, {"val_accuracy": v}, None) for epoch, v in enumerate([0.9, 0.7, 0.8, 0.6], 1)]
    assert checkpoints.best == (0.9, ids[0])
    assert [epoch for epoch, _ in checkpoints.kept] == [1, 4]
    alive = {m.name for m in mlflow.search_logged_models(experiment_ids=[experiment], output_format="list")}
    assert alive == {"checkpoint-epoch-1", "checkpoint-epoch-4"}

    by_loss = EpochModels(config.keep_checkpoints, "mse", log_model)  # lower is better for mse
    ids = [by_loss.log(epoch, {"val_mse": value}, None) for epoch, value in enumerate([0.5, 0.2, 0.4], 1)]
    assert by_loss.best == (0.2, ids[1]) and [epoch for epoch, _ in by_loss.kept] == [2, 3]
