"""A tracking server outage during training costs nothing (issue 22: it used to block training, then lose the
epoch and leave an empty checkpoint folder with a resume tag that could not work).

A real `mlflow server` process is frozen with SIGSTOP (its connections hang, as a dead server's do) and thawed
with SIGCONT, while a real `bertcls train` process trains 2 epochs through it. MLflow's own HTTP retry budget is
shortened (one try of 3 s per call) so the test needs no minutes of waiting; bertcls's background logger retries
above it. Three runs of the same recipe: undisturbed; an outage that ends before the job does (the run must be
identical to the undisturbed one); an outage that outlasts the job (it exits 75 with one paragraph, and the
command it names logs everything to the same run once the server is back).
"""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

from tests import e2e

pytestmark = pytest.mark.slow

EXPERIMENT = "outage"
EPOCH_METRICS = ("train_loss", "val_loss", "val_accuracy", "grad_norm", "lr")
FAST_FAILING_CLIENT = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "3"}


def _train(url: str, model_dir, cwd, wait_at_end_s: str, log) -> subprocess.Popen:
    """`bertcls train` through the server; its stderr goes to `log`, read while it runs."""
    command = [
        sys.executable,
        "-m",
        "bertcls.cli",
        "train",
        "--model",
        str(model_dir),
        "--experiment",
        EXPERIMENT,
        "--max-train-samples",
        "160",
        "--max-eval-samples",
        "32",
        "--max-seq-length",
        "64",
        "--epochs",
        "2",
        "--max-buckets",
        "2",
        "--lr",
        "5e-4",
        "--system-metrics",
        "false",
    ]
    env = e2e.subprocess_env(url, BERTCLS_TRACKING_WAIT_S=wait_at_end_s, **FAST_FAILING_CLIENT)
    with open(log, "w") as err:
        return subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True
        )


def _finish(process: subprocess.Popen, log, timeout_s: float = 600) -> tuple[int, str, str]:
    try:
        out, _ = process.communicate(timeout=timeout_s)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, out, log.read_text()


def _wait_for_warning(log, process: subprocess.Popen, timeout_s: float = 300) -> None:
    """Until the job says it lost the server: the outage has then really hit it, however loaded the machine."""
    deadline = time.monotonic() + timeout_s
    while "retrying; training continues" not in log.read_text():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the job never noticed the outage"
        time.sleep(0.3)


def _run_id(output: str) -> str:
    return re.search(r"^run ([0-9a-f]{32})", output, re.M).group(1)


def _newest_run(client: MlflowClient, before: set[str], timeout_s: float = 300):
    """The run a just-started job created, once it exists."""
    experiment = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        experiment = experiment or client.get_experiment_by_name(EXPERIMENT)
        runs = [r for r in client.search_runs([experiment.experiment_id])] if experiment else []
        fresh = [r for r in runs if r.info.run_id not in before]
        if fresh:
            return fresh[0].info.run_id
        time.sleep(0.5)
    raise AssertionError("the training run did not start")


def _wait_for_epoch(client: MlflowClient, run_id: str, epoch: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while not [m for m in client.get_metric_history(run_id, "train_loss") if m.step == epoch]:
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no epoch metrics"
        time.sleep(0.3)


def _history(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    return {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k)) for k in EPOCH_METRICS}


def test_an_outage_never_stops_training_and_loses_nothing(tmp_path, small_model_dir):
    home = tmp_path / "server"
    home.mkdir()
    args = ["--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}", "--artifacts-destination", str(home / "art")]
    with e2e.mlflow_server_process(args, home) as (url, server):
        client = MlflowClient(url)
        # undisturbed: the same `bertcls train`, in this process (one CPU device, as the subprocesses have)
        options = {
            "max_train_samples": 160,
            "max_eval_samples": 32,
            "max_seq_length": 64,
            "epochs": 2,
            "max_buckets": 2,
            "lr": "5e-4",
        }
        reference = _history(client, e2e.train_here(url, EXPERIMENT, small_model_dir, **options))
        assert all(len(points) == 2 for points in reference.values()), reference

        # an outage from the end of epoch 1 until the job has noticed it and 4 s more (longer than a call's
        # budget), over before the job ends
        before = {r.info.run_id for r in client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])}
        log = tmp_path / "short.err"
        process = _train(url, small_model_dir, tmp_path, "120", log)
        run_id = _newest_run(client, before)
        _wait_for_epoch(client, run_id, 1, process)
        e2e.signal_group(server, signal.SIGSTOP)
        _wait_for_warning(log, process)
        time.sleep(4)  # past one more call's 3 s budget
        e2e.signal_group(server, signal.SIGCONT)
        code, out, err = _finish(process, log)
        assert code == 0, err[-3000:]
        assert err.count("retrying; training continues") == 1 and "answers again" in err, err[-3000:]
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and "model_uri" in run.data.tags
        assert _history(client, run_id) == reference  # the same run as an undisturbed one

        # an outage from the end of epoch 1 to after the job: it waits 5 s at the end, then says what to do
        before.add(run_id)
        log = tmp_path / "long.err"
        process = _train(url, small_model_dir, tmp_path, "5", log)
        run_id = _newest_run(client, before)
        _wait_for_epoch(client, run_id, 1, process)
        e2e.signal_group(server, signal.SIGSTOP)
        code, out, err = _finish(process, log)
        e2e.signal_group(server, signal.SIGCONT)
        said = " ".join(err.split())
        assert code == 75 and "Traceback" not in err, err[-3000:]
        assert err.count("retrying; training continues") == 1 and "nothing computed is lost" in said, err[-3000:]
        assert "the metrics of all 2 epoch(s)" in said and "resume checkpoint" in said, said
        command = re.search(r"run: (bertcls train --resume-run-id [0-9a-f]{32})", said).group(1)
        assert [m.step for m in client.get_metric_history(run_id, "train_loss")] == [1]  # epoch 2 waits locally
        assert "model_uri" not in client.get_run(run_id).data.tags

        resumed = subprocess.run(
            [sys.executable, "-m", "bertcls.cli", *shlex.split(command)[1:]],
            cwd=tmp_path,
            env=e2e.subprocess_env(url),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and "model_uri" in run.data.tags and "resume_command" not in run.data.tags
        assert _history(client, run_id) == reference  # every epoch once, as computed before the outage ended
        assert {r.info.run_id for r in client.search_runs([run.info.experiment_id])} == before | {run_id}
