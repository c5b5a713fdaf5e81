"""Which process owns a run (host, pid, process start) plus a per-epoch heartbeat, and when a run is stale.

A run whose process was killed with SIGKILL (or whose machine died) stays RUNNING in MLflow forever.
Training runs carry these tags so `bertcls runs --stale` can tell such runs apart: on the same host a
run is stale when its process is gone (or the pid now belongs to a newer process); on another host,
when its heartbeat is older than a timeout. No mlflow here: plain tags in, a verdict out.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping

HOST, PID, PROCESS_START, HEARTBEAT = "host", "pid", "process_start", "heartbeat"


def process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` in clock ticks since boot (Linux), to detect pid reuse; None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_alive(pid: int, started: str | None) -> bool:
    """True while `pid` runs and, when its start time was recorded, is still the same process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return not started or process_start(pid) in (None, started)


def process_tags() -> dict[str, str]:
    """Tags naming this process, set when a run starts."""
    pid = os.getpid()
    return {HOST: socket.gethostname(), PID: str(pid), PROCESS_START: process_start(pid) or "", **heartbeat_tag()}


def heartbeat_tag(now: float | None = None) -> dict[str, str]:
    """The heartbeat tag: unix seconds, refreshed after every epoch."""
    return {HEARTBEAT: f"{time.time() if now is None else now:.0f}"}


def stale_reason(
    tags: Mapping[str, str],
    start_time_ms: int,
    now: float,
    this_host: str,
    heartbeat_timeout_s: float,
    alive: Callable[[int, str | None], bool] = process_alive,
) -> str | None:
    """Why a RUNNING run is stale, or None while it may still be alive."""
    host, pid = tags.get(HOST), tags.get(PID, "")
    if host == this_host and pid.isdigit():
        if alive(int(pid), tags.get(PROCESS_START) or None):
            return None
        return f"its process {pid} on {host} is gone"
    beat = tags.get(HEARTBEAT, "")
    last = float(beat) if beat.replace(".", "", 1).isdigit() else start_time_ms / 1000
    silent = now - last
    if silent <= heartbeat_timeout_s:
        return None
    where = f"on host {host}" if host else "with no process tags"
    return f"no heartbeat for {silent / 60:.0f} min ({where}; timeout {heartbeat_timeout_s / 60:.0f} min)"
