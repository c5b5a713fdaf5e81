"""The README's quick start, run as written (parsed from README.md) against a temp store on a tiny slice.

Only three things are changed on the way: `mlflow run .` names this checkout (the commands run in a
temp dir), the train command gets a tiny slice appended (later -P values win), and the serving port is
a free one.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests import e2e

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def quick_start_commands() -> list[str]:
    """The command lines of the first bash block under '## Quick start'."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def _wait_ping(port: int, server: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, "server exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError("the served model did not answer /ping")


def test_readme_quick_start_runs_as_written(tmp_path, small_model_dir):
    commands = quick_start_commands()
    kinds = [c.split()[0] + " " + c.split()[1] for c in commands]
    assert kinds == ["mlflow run", "mlflow run", "python -c", "mlflow run", "mlflow models", "curl -s"], kinds
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = e2e.subprocess_env(uri)
    tiny = f" -P model={small_model_dir} -P max_train_samples=200 -P max_eval_samples=60 -P epochs=1 -P max_buckets=2"
    port = str(e2e.free_port())
    server = None
    outputs = []
    try:
        for command in commands:
            command = command.replace("mlflow run . ", f"mlflow run {ROOT} ").replace("5001", port)
            if " -e train " in command:
                command = command.split("  #")[0] + tiny
            if command.startswith("mlflow models serve"):
                server = subprocess.Popen(
                    ["bash", "-c", command],
                    cwd=tmp_path,
                    env=env,
                    start_new_session=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                _wait_ping(int(port), server)
                continue
            done = subprocess.run(
                ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
            )
            assert done.returncode == 0, (command, done.stderr[-3000:])
            outputs.append(done.stdout)
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("bertcls").experiment_id])
    assert sorted(r.data.tags.get("bertcls_job", "") for r in runs) == ["evaluate", "register", "train"]
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert "first champion" in outputs[1]
    assert re.search(r"label\s+prob_ham\s+prob_spam", outputs[2])
    served = json.loads(outputs[4])["predictions"]
    assert len(served) == 1 and served[0]["label"] in ("ham", "spam")


def test_readme_padding_figures_are_what_data_stats_prints():
    """The README's padding-efficiency row is reproduced by the command it names."""
    from click.testing import CliRunner

    from bertcls.cli import main

    row = next(line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| padding eff"))
    command = re.search(r"`(bertcls data-stats[^`]*)`", row).group(1)
    buckets, pad_to_max = re.search(r"([0-9.]+) fitted buckets vs ([0-9.]+) pad-to-128", row).groups()
    result = CliRunner().invoke(main, command.split()[1:])
    assert result.exit_code == 0, result.output
    train = next(line for line in result.output.splitlines() if line.startswith("train "))
    assert train.split()[-2:] == [buckets, pad_to_max], (train, row)
