"""Many hosts, for real on one machine: two `bertcls train` processes joined by jax.distributed (2 CPU devices
each, gloo collectives over loopback) make one MLflow run with the loss trajectory of one process with one
device (the same `bertcls train`, run in the test process), and process 1 never touches MLflow.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys

import pytest
from mlflow import MlflowClient

from tests import e2e

pytestmark = pytest.mark.slow

OPTIONS = [
    "--max-train-samples",
    "64",
    "--max-eval-samples",
    "32",
    "--epochs",
    "2",
    "--max-buckets",
    "2",
    "--batch-size",
    "16",
    "--eval-batch-size",
    "16",
    "--system-metrics",
    "false",
]
TRAJECTORY = ("train_loss", "val_loss", "grad_norm", "val_accuracy")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(uri: str, cwd, experiment: str, model_dir, devices: int, *cluster: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "bertcls.cli", "train", "--model", str(model_dir), "--experiment", experiment]
    env = e2e.subprocess_env(uri, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    return subprocess.Popen(
        [*command, *OPTIONS, *cluster], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(process: subprocess.Popen) -> str:
    try:
        out, err = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err[-3000:]
    return out


def test_two_processes_of_two_devices_make_one_run_with_the_trajectory_of_one_process(
    tmp_path, small_model_dir, store_template
):
    shutil.copy(store_template, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    e2e.bertcls_here(uri, "train", "--model", str(small_model_dir), "--experiment", "one-process", *OPTIONS)

    coordinator = f"127.0.0.1:{_free_port()}"
    cluster = ["--coordinator", coordinator, "--num-processes", "2", "--process-id"]
    processes = [_start(uri, tmp_path, "two-processes", small_model_dir, 2, *cluster, str(i)) for i in range(2)]
    outputs = [_finish(p) for p in processes]
    assert "process 1: done (process 0 logged the run)" in outputs[1] and "best epoch" in outputs[0]

    (reference,) = client.search_runs([client.get_experiment_by_name("one-process").experiment_id])
    (run,) = client.search_runs([client.get_experiment_by_name("two-processes").experiment_id])  # one run only
    assert run.info.status == "FINISHED"
    assert run.data.tags["process_count"] == "2" and run.data.tags["device_count"] == "4"
    assert reference.data.tags["process_count"] == "1" and reference.data.tags["device_count"] == "1"
    for key in TRAJECTORY:
        mine = client.get_metric_history(run.info.run_id, key)
        theirs = client.get_metric_history(reference.info.run_id, key)
        assert [m.step for m in mine] == [1, 2], key  # every point once: process 1 logs nothing
        assert [m.value for m in mine] == pytest.approx([m.value for m in theirs], abs=1e-5), key
    for key in ("test_accuracy", "best_val_loss"):
        assert len(client.get_metric_history(run.info.run_id, key)) == 1
        assert run.data.metrics[key] == pytest.approx(reference.data.metrics[key], abs=1e-5)
