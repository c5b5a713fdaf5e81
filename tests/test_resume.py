"""Resume: a run stopped by a real SIGTERM inside epoch 2 continues as the same MLflow run and ends with the
metrics and weights of an uninterrupted run; and every resume that cannot work is refused before it starts.

The train job runs for real in-process (1-layer MiniLM, 120 real SMS texts, a temp sqlite store); the
signal is sent to this process by a fit() callback at a chosen batch, so the stop point is deterministic.
"""

from __future__ import annotations

import dataclasses
import os
import signal

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from bertcls.config import DataConfig, TrainConfig
from bertcls.config.saved import train_config_to_dict
from bertcls.errors import ResumeError
from bertcls.jobs import train as train_job
from bertcls.model.weights import flat_params, load_model
from bertcls.paths import cache_root
from bertcls.tracking import runs
from bertcls.tracking.checkpoints import RESUME_TAG, resume_source
from bertcls.tracking.registry import resolve_model_uri

EPOCH_KEYS = ("train_loss", "val_loss", "val_accuracy", "val_mcc", "grad_norm", "lr")


class SigtermAt:
    """Sends this process a real SIGTERM after batch `batch` of epoch `epoch`, or as training starts when
    epoch is 0 (a fit() callback)."""

    def __init__(self, epoch: int, batch: int):
        self.at, self.epoch = (epoch, batch), 0

    def on_train_start(self, info) -> None:
        if self.at[0] == 0:
            os.kill(os.getpid(), signal.SIGTERM)

    def on_epoch_start(self, epoch: int, epochs: int, batches: int) -> None:
        self.epoch = epoch

    def on_batch_end(self, index: int, stats) -> None:
        if (self.epoch, index) == self.at:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.fixture
def config(small_model_dir, sms_csv) -> TrainConfig:
    return TrainConfig(
        model=str(small_model_dir),
        data=DataConfig(train_file=str(sms_csv), max_seq_length=32, max_buckets=2),
        epochs=3,
        batch_size=16,
        eval_batch_size=16,
        log_checkpoints="all",
        keep_checkpoints=1,
    )


def _killed(config: TrainConfig, epoch: int, batch: int) -> str:
    """Train until a SIGTERM after (epoch, batch); returns the KILLED run's id."""
    before = {r.info.run_id for r in mlflow.search_runs(search_all_experiments=True, output_format="list")}
    with pytest.raises(KeyboardInterrupt):
        train_job.train(config, experiment="resume", callbacks=(SigtermAt(epoch, batch),))
    (run,) = [
        r for r in mlflow.search_runs(search_all_experiments=True, output_format="list") if r.info.run_id not in before
    ]
    assert run.info.status == "KILLED"
    return run.info.run_id


def _weights(run_id: str) -> dict[str, np.ndarray]:
    return flat_params(load_model(resolve_model_uri(f"runs:/{run_id}/model").local_dir)[0])


@pytest.mark.slow
def test_a_run_killed_in_epoch_2_resumes_as_the_same_run_with_the_uninterrupted_result(empty_store, config):
    client = MlflowClient()
    mlflow.create_experiment("resume")
    straight = train_job.train(config, experiment="resume")

    run_id = _killed(config, epoch=2, batch=2)  # 6 batches per epoch: stopped inside epoch 2
    killed = client.get_run(run_id)
    assert [m.step for m in client.get_metric_history(run_id, "train_loss")] == [1]
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/resume/latest.json") == {"checkpoint": "epoch-2-batch-3"}
    assert killed.data.tags[RESUME_TAG] == f"bertcls train --resume-run-id {run_id}"

    resumed = train_job.train(config, experiment="resume", resume_run_id=run_id)
    assert resumed.run_id == run_id
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and RESUME_TAG not in run.data.tags
    reference = client.get_run(straight.run_id)
    for key in EPOCH_KEYS:
        history = client.get_metric_history(run_id, key)
        assert [m.step for m in history] == [1, 2, 3], key  # each epoch exactly once
        assert [m.value for m in history] == [m.value for m in client.get_metric_history(straight.run_id, key)], key
    # the resumed epoch's timing covers the whole epoch, its part before the kill too: examples/s x time = n_train
    per_s, seconds = (
        next(m.value for m in client.get_metric_history(run_id, k) if m.step == 2)
        for k in ("train_examples_per_s", "epoch_time_s")
    )
    assert per_s * seconds == pytest.approx(float(run.data.params["n_train"]), rel=1e-6)
    final = {k: v for k, v in reference.data.metrics.items() if k.startswith(("best_", "test_"))}
    assert final and {k: run.data.metrics[k] for k in final} == final
    mine, theirs = _weights(run_id), _weights(straight.run_id)
    assert mine.keys() == theirs.keys()
    assert all(np.array_equal(mine[k], theirs[k]) for k in mine)  # bit for bit

    # keep_checkpoints=1 held across the resume: the best epoch's checkpoint and one other remain
    checkpoints = [
        m
        for m in mlflow.search_logged_models(output_format="list")
        if m.source_run_id == run_id and m.name.startswith("checkpoint-")
    ]
    assert len(checkpoints) == 2
    # a finished run keeps no resume checkpoint, locally or in its artifacts
    assert not (cache_root("checkpoints") / run_id).exists()
    assert "resume" not in {a.path for a in client.list_artifacts(run_id)}


def _train_run(config: TrainConfig, status: str, checkpoint: bool) -> str:
    """A train run as train_job.train records it (tags, resolved config, the resume pointer), ended with `status`."""
    with runs.tracked_run("resume") as run:
        runs.set_job_tag("train")
        runs.set_environment_tags()
        runs.log_train_config(train_config_to_dict(config))
        if checkpoint:
            mlflow.log_dict({"checkpoint": "epoch-2-batch-0"}, "resume/latest.json")
    run_id = run.info.run_id
    MlflowClient().set_terminated(run_id, status)
    return run_id


def test_resume_source_refuses_what_cannot_resume_and_names_the_fix(empty_store, config):
    with pytest.raises(ResumeError, match="no run with this id"):
        resume_source("0123456789abcdef0123456789abcdef", config)
    with pytest.raises(ResumeError, match="already FINISHED: there is nothing to resume"):
        resume_source(_train_run(config, "FINISHED", checkpoint=True), config)
    with pytest.raises(ResumeError, match="has no resume checkpoint") as refused:  # e.g. kill -9 inside epoch 1
        resume_source(_train_run(config, "KILLED", checkpoint=False), config)
    assert "a kill -9 or a crash inside the first epoch leaves none" in str(refused.value)
    assert "before its first training step" not in str(refused.value)  # what it said: wrong after a kill -9

    killed = _train_run(config, "KILLED", checkpoint=True)
    source = resume_source(killed, TrainConfig())  # defaults given: the run's own parameters are used
    assert source.config == config and source.checkpoint == "epoch-2-batch-0"
    other_model = dataclasses.replace(config, model="bert-base-uncased")
    with pytest.raises(ResumeError, match=r"its own model and data, but this command sets model=bert-base-uncased"):
        resume_source(killed, other_model)
    other_lr = dataclasses.replace(config, optim=dataclasses.replace(config.optim, lr=3e-4))
    with pytest.raises(ResumeError, match=r"lr=0.0003 \(the run has 0.0001\)"):
        resume_source(killed, other_lr)

    running = _train_run(config, "RUNNING", checkpoint=True)  # its process (this one) is alive
    with pytest.raises(ResumeError, match="is still RUNNING in process"):
        resume_source(running, config)


@pytest.mark.slow
def test_resume_refuses_other_data_and_a_run_stopped_before_its_first_step(empty_store, config, sms_csv):
    client = MlflowClient()
    mlflow.create_experiment("resume")
    two_epochs = dataclasses.replace(config, epochs=2, log_checkpoints="best")
    early = _killed(two_epochs, epoch=0, batch=0)  # before the first step: no checkpoint
    with pytest.raises(ResumeError, match="has no resume checkpoint"):
        train_job.train(two_epochs, resume_run_id=early)

    run_id = _killed(two_epochs, epoch=2, batch=0)
    sms_csv.write_text(sms_csv.read_text().replace(" you ", " u "))  # the same file, other data
    with pytest.raises(ResumeError, match="trained on other data"):
        train_job.train(two_epochs, resume_run_id=run_id)
    assert client.get_run(run_id).info.status == "KILLED"  # untouched by the refusal
    assert [m.step for m in client.get_metric_history(run_id, "train_loss")] == [1]


@pytest.mark.slow
def test_a_word_tagger_killed_in_epoch_2_resumes_with_the_uninterrupted_result(empty_store, small_model_dir):
    """task=ner: position labels, per-word validation outputs and their sentence counts survive the checkpoint."""
    config = TrainConfig(
        model=str(small_model_dir),
        data=DataConfig(dataset="btc", max_train_samples=96, max_eval_samples=32, max_seq_length=32, max_buckets=2),
        epochs=2,
        batch_size=16,
        eval_batch_size=16,
    )
    client = MlflowClient()
    mlflow.create_experiment("resume")
    straight = train_job.train(config, experiment="resume")
    run_id = _killed(config, epoch=2, batch=2)
    train_job.train(config, experiment="resume", resume_run_id=run_id)
    run, reference = client.get_run(run_id), client.get_run(straight.run_id)
    final = {k: v for k, v in reference.data.metrics.items() if k.startswith(("best_val_", "test_"))}
    assert "best_val_f1" in final and {k: run.data.metrics[k] for k in final} == final
    mine, theirs = _weights(run_id), _weights(straight.run_id)
    assert all(np.array_equal(mine[k], theirs[k]) for k in mine)
    tables = {a.path for a in client.list_artifacts(run_id)}
    assert "val_entity_types.json" in tables
