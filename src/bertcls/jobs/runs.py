"""The runs job: RUNNING runs with the process that owns each, and ending the stale ones FAILED."""

from __future__ import annotations

import dataclasses
import socket
import time

from bertcls.runtime import liveness
from bertcls.tracking import runs


@dataclasses.dataclass
class RunningRun:
    run_id: str
    experiment: str
    name: str
    owner: str  # host:pid, or "?" for runs without process tags
    stale_reason: str | None
    marked_failed: bool = False


def running_runs(experiment: str | None, heartbeat_timeout_s: float, mark_failed: bool = False) -> list[RunningRun]:
    """RUNNING runs with a liveness verdict; with mark_failed, the stale ones are ended FAILED."""

    host, now, out = socket.gethostname(), time.time(), []
    for run in runs.running_runs(experiment):
        tags = run.data.tags
        reason = liveness.stale_reason(tags, run.info.start_time, now, host, heartbeat_timeout_s)
        owner = f"{tags[liveness.HOST]}:{tags.get(liveness.PID, '?')}" if liveness.HOST in tags else "?"
        found = RunningRun(run.info.run_id, run.info.experiment_id, run.info.run_name or "", owner, reason)
        if reason and mark_failed:
            runs.mark_failed(found.run_id, reason)
            found.marked_failed = True
        out.append(found)
    return out
