"""Keep an interrupted run marked KILLED after `mlflow run` exits.

`mlflow run` marks its run FAILED after an interrupt even when the run already ended KILLED: its
`_maybe_set_run_terminated` hands a status *string* to `RunStatus.is_terminated`, which expects an int,
so the check never sees the run as finished (MLflow 3.x). The training process starts this guard,
detached, when it is interrupted under `mlflow run`; the guard waits for the `mlflow run` process to exit
and sets KILLED again if MLflow overwrote it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

WAIT_LIMIT_S = 120.0


def mlflow_run_ancestor() -> int | None:
    """PID of the `mlflow run` process that launched us, if any (Linux /proc; None elsewhere)."""
    pid = os.getppid()
    for _ in range(5):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                args = handle.read().split(b"\0")
            with open(f"/proc/{pid}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return None
        if any(a.endswith(b"mlflow") or a == b"mlflow" for a in args) and b"run" in args:
            return pid
        pid = parent
        if pid <= 1:
            return None
    return None


def start(run_id: str) -> None:
    """Launch the guard in its own session (a terminal's Ctrl-C must not reach it)."""
    watched = mlflow_run_ancestor()
    if watched is None:
        return
    subprocess.Popen(
        [sys.executable, "-m", "bertcls.tracking.status_guard", run_id, str(watched)],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(run_id: str, watched: int) -> None:
    deadline = time.monotonic() + WAIT_LIMIT_S
    while _alive(watched) and time.monotonic() < deadline:
        time.sleep(0.2)
    from mlflow import MlflowClient

    client = MlflowClient()
    if client.get_run(run_id).info.status != "KILLED":
        client.set_terminated(run_id, "KILLED")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
