"""Whether a train run can be resumed, with which configuration, and the command that resumes it.

A run resumes with its own recorded parameters: a parameter given with the resume that differs from both
the default and the run's value is refused (an explicit other model or dataset, say), since the resumed
run must give the result of the uninterrupted one. Every refusal comes before the run is touched.
"""

from __future__ import annotations

import dataclasses
import shlex
import socket
import time

from bertcls.config import TrainConfig
from bertcls.config.fields import flatten
from bertcls.errors import ResumeError

RESUME_TAG = "resume_command"  # on a running/interrupted train run; removed when it finishes


@dataclasses.dataclass(frozen=True)
class ResumeSource:
    run_id: str
    experiment_id: str
    config: TrainConfig  # the run's own
    checkpoint: str  # name of its latest complete checkpoint


def _differences(given: TrainConfig, recorded: TrainConfig) -> dict[str, tuple]:
    """Parameters set to something other than the default and other than the run's value."""
    defaults, mine, theirs = flatten(TrainConfig()), flatten(given), flatten(recorded)
    return {k: (mine[k], theirs.get(k)) for k in mine if mine[k] != defaults[k] and mine[k] != theirs.get(k)}


def resume_source(run_id: str, given: TrainConfig, heartbeat_timeout_s: float = 120.0) -> ResumeSource:
    """The run to continue and its configuration; a ConfigError naming the problem and the fix otherwise."""
    from bertcls.runtime import liveness
    from bertcls.tracking import artifacts, runs
    from bertcls.tracking.registry import run_train_config

    run = runs.get_run(run_id)
    if run is None:
        raise ResumeError(
            f"resume_run_id {run_id}: no run with this id in the tracking store ({runs.tracking_uri()}). "
            "Check the id (the run's `resume_command` tag holds the exact command) and MLFLOW_TRACKING_URI."
        )
    tags, status = run.data.tags, run.info.status
    if tags.get("bertcls_job", "train") != "train":
        raise ResumeError(f"resume_run_id {run_id} is a {tags['bertcls_job']} run; only train runs resume.")
    if status == "FINISHED":
        raise ResumeError(
            f"Run {run_id} already FINISHED: there is nothing to resume. Start a new run (train without "
            "resume_run_id), or register this one."
        )
    if status in ("RUNNING", "SCHEDULED"):
        reason = liveness.stale_reason(
            tags, run.info.start_time, time.time(), socket.gethostname(), heartbeat_timeout_s
        )
        if reason is None:
            owner = f"{tags.get(liveness.HOST, '?')}:{tags.get(liveness.PID, '?')}"
            raise ResumeError(
                f"Run {run_id} is still RUNNING in process {owner}. Stop it first (Ctrl-C or SIGTERM writes a "
                "checkpoint and marks it KILLED), then resume."
            )
    recorded = run_train_config(run)
    differing = _differences(given, recorded)
    if differing:
        shown = "; ".join(f"{k}={mine} (the run has {theirs})" for k, (mine, theirs) in sorted(differing.items()))
        what = "model and data" if {"model", "dataset"} & set(differing) else "parameters"
        raise ResumeError(
            f"resume_run_id {run_id} continues that run with its own {what}, but this command sets {shown}. "
            "Drop those parameters to resume (the run's `resume_command` tag holds the exact command), or start a "
            "new run without resume_run_id to train with them."
        )
    # This machine's copy is never older than the artifacts' (they are synced from it), and it is the only one
    # while the tracking server was unreachable.
    checkpoint = local_latest(run_id) or artifacts.latest_resume_checkpoint(run_id)
    if checkpoint is None:
        raise ResumeError(
            f"Run {run_id} ({status}) has no resume checkpoint: it stopped before its first one (a checkpoint is "
            "written after every epoch and when Ctrl-C or SIGTERM stops training; a kill -9 or a crash inside the "
            "first epoch leaves none), or it was logged before resume existed. Start a new run with its parameters "
            "instead."
        )
    return ResumeSource(run_id, run.info.experiment_id, recorded, checkpoint)


def resume_command(run_id: str, experiment_id: str, env_manager: str | None) -> str:
    """The command that continues `run_id`: through `mlflow run` when it was launched that way."""
    if env_manager:
        where = ["--env-manager", env_manager, "--experiment-id", experiment_id, "--run-id", run_id]
        return shlex.join(["mlflow", "run", ".", "-e", "train", *where, "-P", f"resume_run_id={run_id}"])
    return shlex.join(["bertcls", "train", "--resume-run-id", run_id])


class ResumeCheckpoints:
    """Writes fit()'s progress as a resume checkpoint in a local directory first (with `latest.json` naming it),
    then has the background logger sync it to the run's artifacts (`resume/<name>`). Only the latest is kept,
    locally and in the artifacts; while the tracking server is unreachable the local one is what resumes."""

    def __init__(self, run_id: str, steps, fingerprint: dict, extras, background, current: str | None = None):
        from bertcls.paths import cache_root

        self.run_id = run_id
        self.root = cache_root("checkpoints", run_id)
        self.steps, self.fingerprint, self.extras = steps, fingerprint, extras
        self.background = background
        self.current = current  # name of the latest local checkpoint (the one resumed from, at first)
        self.synced = current  # name of the latest checkpoint in the run's artifacts

    def save(self, progress) -> None:
        import json
        import shutil

        from bertcls.train import resume

        name = resume.checkpoint_name(progress)
        path = self.root / name
        shutil.rmtree(path, ignore_errors=True)
        resume.save(path, self.steps, progress, self.fingerprint, self.extras())
        (self.root / LOCAL_POINTER).write_text(json.dumps({"checkpoint": name}), encoding="utf-8")
        self.current = name
        self.background.submit(f"the resume checkpoint {name}", self._sync, name)

    def _sync(self, name: str) -> None:
        """Upload `name` unless a newer checkpoint replaced it meanwhile; drop what it replaces (worker thread)."""
        import shutil

        from bertcls.tracking import artifacts

        if name != self.current:  # a newer one is queued behind: upload that one only
            return
        artifacts.sync_resume_checkpoint(self.run_id, self.root / name, self.synced)
        self.synced = name
        for old in self.root.iterdir():  # the older local ones; a newer one may be being written right now
            if old.is_dir() and _position(old.name) < _position(name):
                shutil.rmtree(old, ignore_errors=True)

    def discard(self, run_id: str) -> None:
        """A finished run needs no resume checkpoint: free the local copy and the artifacts."""
        import shutil

        from bertcls.tracking import artifacts

        shutil.rmtree(self.root, ignore_errors=True)
        if self.synced:
            artifacts.delete_artifacts(run_id, artifacts.RESUME_DIR)


def _position(name: str) -> tuple[int, int]:
    """(epoch, batch) of a checkpoint named `epoch-E-batch-B`; (-1, -1) for anything else."""
    parts = name.split("-")
    try:
        return int(parts[1]), int(parts[3])
    except (IndexError, ValueError):
        return -1, -1


LOCAL_POINTER = "latest.json"  # in the local checkpoint folder: the newest complete checkpoint


def local_latest(run_id: str) -> str | None:
    """The newest complete resume checkpoint of `run_id` on this machine, or None."""
    import json

    from bertcls.paths import cache_root
    from bertcls.train import resume

    root = cache_root("checkpoints", run_id)
    try:
        name = json.loads((root / LOCAL_POINTER).read_text(encoding="utf-8"))["checkpoint"]
    except (OSError, ValueError, KeyError):
        return None
    return name if resume.read_record(root / name) is not None else None


def local_checkpoint(source: ResumeSource):
    """The source's latest checkpoint on this machine: the local copy when complete, else downloaded."""
    import shutil
    import tempfile
    from pathlib import Path

    from bertcls.paths import cache_root
    from bertcls.tracking import artifacts
    from bertcls.train import resume

    root = cache_root("checkpoints", source.run_id)
    path = root / source.checkpoint
    if resume.read_record(path) is None:
        shutil.rmtree(path, ignore_errors=True)
        with tempfile.TemporaryDirectory(dir=root) as staging:
            downloaded = artifacts.download_resume_checkpoint(source.run_id, source.checkpoint, Path(staging))
            shutil.move(str(downloaded), str(path))
    return path
