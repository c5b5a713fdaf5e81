"""Stale-run verdicts from process tags, and a brand-new sqlite store opened by several processes at once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import mlflow
import pytest

from bertcls.runtime import liveness

HOUR_MS = 3_600_000


def _finished_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_own_live_process_is_not_stale():
    tags = liveness.process_tags()
    assert tags["host"] == socket.gethostname() and tags["pid"] == str(os.getpid())
    assert tags["process_start"]  # Linux: the pid's start time, against pid reuse
    now = float(tags["heartbeat"]) + 10 * 24 * 3600  # even with a heartbeat ten days old
    assert liveness.stale_reason(tags, 0, now, socket.gethostname(), 60) is None


def test_a_gone_process_on_this_host_is_stale_at_once():
    pid = _finished_pid()
    tags = {**liveness.process_tags(), "pid": str(pid), "process_start": ""}
    reason = liveness.stale_reason(tags, 0, float(tags["heartbeat"]), socket.gethostname(), 3600)
    assert reason == f"its process {pid} on {socket.gethostname()} is gone"


def test_a_reused_pid_is_not_the_run_s_process():
    tags = {**liveness.process_tags(), "process_start": "1"}  # our pid, but started at another time
    assert "is gone" in liveness.stale_reason(tags, 0, 0.0, socket.gethostname(), 3600)


def test_another_host_is_judged_by_its_heartbeat():
    tags = {"host": "elsewhere", "pid": "1", "heartbeat": "1000"}
    assert liveness.stale_reason(tags, 0, 1000 + 3599, "here", 3600) is None
    assert "no heartbeat for 60 min (on host elsewhere" in liveness.stale_reason(tags, 0, 1000 + 3601, "here", 3600)
    untagged = liveness.stale_reason({}, 5 * HOUR_MS, 5 * 3600 + 7200, "here", 3600)  # start time stands in
    assert untagged and "no process tags" in untagged


RACE = textwrap.dedent(
    """
    import sys, mlflow
    from bertcls.tracking import runs
    mlflow.set_tracking_uri(sys.argv[1])
    with runs.tracked_run("race") as run:
        mlflow.log_param("who", sys.argv[2])
    print(run.info.run_id)
    """
)


@pytest.mark.slow  # three processes race
def test_concurrent_jobs_on_a_brand_new_sqlite_store_all_start(tmp_path):
    """Without the lock, 2 of 3 processes died in MLflow's schema migration (reproduced before the fix)."""
    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, uri, str(i)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    results = [(r.wait(timeout=180), *r.communicate()) for r in racers]
    assert [code for code, _, _ in results] == [0, 0, 0], [err[-1500:] for _, _, err in results]
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("race").experiment_id])
    assert sorted(r.data.params["who"] for r in runs) == ["0", "1", "2"]
    assert {r.info.status for r in runs} == {"FINISHED"}
