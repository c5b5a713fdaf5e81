"""The fit() callback that logs a training run's epochs to MLflow, in the background."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import mlflow

from bertcls.runtime import liveness
from bertcls.tracking.runs import attach_run, log_params_to


class MlflowCallback:
    """fit() callback: buckets and step count as params, every epoch's metrics with step=epoch, all through the
    background logger (`bertcls.tracking.background`), so training never waits on the tracking server.

    checkpoint(epoch, metrics, state) -> model id, when given, logs that epoch's model (`state`, snapshot() taken
    when the epoch ended) first; the epoch's val_* metrics are then linked to that model and to the validation
    dataset (the UI's model list compares them).
    """

    def __init__(
        self,
        run_id: str,
        background,
        checkpoint: Callable[[int, dict[str, float], Any], str] | None = None,
        snapshot: Callable[[], Any] | None = None,
        validation_dataset=None,
        already_logged: dict[str, set[int]] | None = None,
    ):
        self.run_id, self.background = run_id, background
        self.checkpoint, self.snapshot = checkpoint, snapshot
        self.validation_dataset = validation_dataset
        # metric -> epochs a resumed run logged before (its last checkpoint may be older than the store's records)
        self.already_logged = {key: set(steps) for key, steps in (already_logged or {}).items()}

    def on_train_start(self, info: dict[str, Any]) -> None:
        params = {"buckets": " ".join(map(str, info["buckets"])), "total_steps": info["total_steps"]}
        self.background.submit("the bucket params", log_params_to, self.run_id, params)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.log_epoch(epoch, metrics, self.snapshot() if self.checkpoint else None)

    def log_epoch(self, epoch: int, metrics: dict[str, float], state=None) -> None:
        """Hand epoch `epoch`'s metrics (and its model, if checkpointing) to the background logger: each metric
        once per epoch, even across a resume (then only the ones the store lacks)."""
        missing = {k: v for k, v in metrics.items() if epoch not in self.already_logged.get(k, ())}
        if not missing:
            return
        for key in missing:
            self.already_logged.setdefault(key, set()).add(epoch)
        stamp = int(time.time() * 1000)  # when computed: a late upload keeps the time, and a retry is no new point
        self.background.submit(f"epoch {epoch}'s metrics", self._log_epoch, epoch, missing, state, stamp)

    def _log_epoch(self, epoch: int, metrics: dict[str, float], state, stamp: int) -> None:
        model_id = None
        if self.checkpoint is not None and state is not None:
            attach_run(self.run_id)  # logging a model needs the run active in this (the worker's) thread
            model_id = self.checkpoint(epoch, metrics, state)
        validation = {k: v for k, v in metrics.items() if k.startswith("val_")}
        others = {k: v for k, v in metrics.items() if k not in validation}
        if others:
            mlflow.log_metrics(others, step=epoch, run_id=self.run_id, timestamp=stamp)
        linked = {"model_id": model_id, "dataset": self.validation_dataset} if model_id else {}
        if validation:
            mlflow.log_metrics(validation, step=epoch, run_id=self.run_id, timestamp=stamp, **linked)
        for key, value in liveness.heartbeat_tag().items():
            mlflow.MlflowClient().set_tag(self.run_id, key, value)
