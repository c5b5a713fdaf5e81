"""Helpers for end-to-end tests: subprocess environment, trainings, a served model on loopback, REST calls."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the MLproject that `mlflow run` runs


def subprocess_env(tracking_uri: str | None = None, **extra: str) -> dict[str, str]:
    """One CPU device (as a user has), this store (if given), offline, the venv first on PATH, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_") and k != "XLA_FLAGS"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", **extra)
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def train(tracking_uri: str, cwd: Path, experiment: str, model_dir: Path, **options) -> str:
    """`bertcls train` in a subprocess with --key value options; returns the run id."""
    command = [sys.executable, "-m", "bertcls.cli", "train", "--model", str(model_dir), "--experiment", experiment]
    for key, value in options.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(
        command, cwd=cwd, env=subprocess_env(tracking_uri), capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # describe()'s first line; against a server MLflow also prints "View run <name> at: <url>" lines.
    return re.search(r"^run ([0-9a-f]{32}):", done.stdout, re.M).group(1)


def bertcls_here(tracking_uri: str, *args: str) -> str:
    """`bertcls <args>` in this process (the real click command, no interpreter start-up) against this store;
    returns its output. For tests where a subprocess is not the point."""
    import mlflow
    from click.testing import CliRunner

    from bertcls.cli import main

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)  # wins over MLFLOW_TRACKING_URI, so set it for the command's duration
    try:
        done = CliRunner().invoke(main, list(args), env={"MLFLOW_TRACKING_URI": tracking_uri}, catch_exceptions=False)
    finally:
        mlflow.set_tracking_uri(previous)
    assert done.exit_code == 0, done.output[-3000:]
    return done.output


def train_here(tracking_uri: str, experiment: str, model_dir: Path, **options) -> str:
    """`bertcls train` with --key value options in this process (see bertcls_here); returns the run id."""
    command = ["train", "--model", str(model_dir), "--experiment", experiment, "--system-metrics", "false"]
    for key, value in options.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    return re.search(r"^run ([0-9a-f]{32}):", bertcls_here(tracking_uri, *command), re.M).group(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def served(tracking_uri: str, model_uri: str, timeout: float = 180, env_manager: str = "local", **env) -> Iterator[int]:
    """`mlflow models serve` on a free loopback port until the block ends (`env_manager` uv: in an environment
    built from the model's own requirements; `env`: extra variables, e.g. MLFLOW_ENV_ROOT); yields the port."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", env_manager]
    server = subprocess.Popen(
        [*command, "-h", "127.0.0.1", "-p", str(port)],
        env=subprocess_env(tracking_uri, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert server.poll() is None, server.stdout.read()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(1)
        yield port
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def post(port: int, payload: dict) -> tuple[int, dict]:
    """POST JSON to /invocations: (HTTP status, decoded body), also for error statuses."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@contextlib.contextmanager
def mlflow_server(args: list[str], home: Path, **env: str):
    """`mlflow server` on 127.0.0.1:<free port> with cwd `home`; yields its URL once /health answers."""
    with mlflow_server_process(args, home, **env) as (url, _):
        yield url


@contextlib.contextmanager
def mlflow_server_process(args: list[str], home: Path, **env: str):
    """As mlflow_server, yielding (URL, the server's Popen: signal_group() stops or continues it)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", "1", *args]  # uvicorn serves concurrent clients from one worker
    # No job runner: its 7 huey consumers serve GenAI jobs (scorers, prompt optimization) bertcls never uses.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **env}
    log = home / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            command,
            cwd=home,
            env=subprocess_env(**env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: _healthy(url), server, log, "mlflow server", timeout_s=180)
        yield url, server
    finally:
        signal_group(server, signal.SIGCONT)  # a stopped server cannot take its SIGTERM
        stop_process(server)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"({path} missing)"


def signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)  # every process was started with start_new_session=True


def stop_process(process: subprocess.Popen, grace_s: float = 20) -> None:
    """SIGTERM the process group, SIGKILL it after `grace_s`; reap the leader, kill what outlived it."""
    signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        signal_group(process, signal.SIGKILL)
        process.wait(timeout=10)
    signal_group(process, signal.SIGKILL)


def wait_until(ready, process: subprocess.Popen, log: Path, what: str, timeout_s: float) -> None:
    """Poll `ready()` until it is true; fail early if `process` exits, and after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert process.poll() is None, f"{what} exited with {process.returncode}:\n{tail(log)}"
        assert time.monotonic() < deadline, f"{what} not ready after {timeout_s} s:\n{tail(log)}"
        time.sleep(0.5)


@contextlib.contextmanager
def mlflow_run_train(root: Path, store_template: Path, experiment: str, params: dict) -> Iterator[tuple[str, object]]:
    """`mlflow run <project> -e train` with `params` into a fresh sqlite store under `root` (copied from the
    session's migrated template); yields (tracking URI, the run) with that store as the current one."""
    import shutil

    import mlflow
    from mlflow import MlflowClient

    shutil.copy(store_template, root / "mlflow.db")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    client.create_experiment(experiment, artifact_location=str(root / "artifacts"))
    command = [sys.executable, "-m", "mlflow", "run", str(PROJECT_ROOT), "-e", "train", "--env-manager", "local"]
    command += ["--experiment-name", experiment, *(f"-P{key}={value}" for key, value in params.items())]
    done = subprocess.run(command, cwd=root, env=subprocess_env(uri), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    previous, previous_env = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        yield uri, run
    finally:
        mlflow.set_tracking_uri(previous)
        if previous_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env


UNTRAINED_LABELS = ["ham", "spam"]


def log_untrained_model(tmp: Path, model_dir: Path, pairs: bool, temperature: float = 1.0) -> str:
    """Log a ham/spam classifier with a fresh head to the active tracking store (no training: its answers are
    arbitrary but real model outputs); returns its model URI."""
    import mlflow

    from bertcls.model.config import ModelConfig
    from bertcls.model.tokenizer import load_tokenizer
    from bertcls.model.weights import load_hf_checkpoint, save_model
    from bertcls.tracking import artifacts

    config = ModelConfig.from_json_file(model_dir / "config.json", head="mean", num_labels=len(UNTRAINED_LABELS))
    model, _ = load_hf_checkpoint(model_dir, config, seed=0)
    calibration = {"temperature": temperature, "fitted_on": 100, "note": ""}
    extra = {"max_seq_length": 32, "has_text_pair": pairs, "calibration": calibration}
    saved = save_model(model, tmp / "saved", UNTRAINED_LABELS, extra=extra)
    load_tokenizer(model_dir).save_pretrained(str(saved))
    with mlflow.start_run():
        return artifacts.log_model(saved, ["free entry", "see you"], ["a", "b"] if pairs else None).model_uri


@contextlib.contextmanager
def store_with_untrained_model(root: Path, model_dir: Path, experiment: str) -> Iterator[tuple[Path, str, str]]:
    """A fresh sqlite store in `root` (current for the block, MLFLOW_TRACKING_URI too) holding one untrained ham /
    spam model with temperature 2 (`log_untrained_model`); yields (root, tracking URI, model URI)."""
    import mlflow
    import pytest

    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id=mlflow.MlflowClient().create_experiment(experiment, str(root / "art")))
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MLFLOW_TRACKING_URI", uri)
            yield root, uri, log_untrained_model(root / "model", model_dir, pairs=False, temperature=2.0)
    finally:
        mlflow.set_tracking_uri(previous)
