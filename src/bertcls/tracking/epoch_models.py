"""log_checkpoints=all: each epoch's model as a logged model; beyond keep_checkpoints, the oldest that is not the
best so far is deleted (MLflow marks the logged model deleted)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bertcls.data.tasks import is_better
from bertcls.tracking import artifacts


class EpochModels:
    """The epochs' logged models of one run, and which of them to keep."""

    def __init__(self, keep: int, primary: str, log_model: Callable[[Any, str, int, dict[str, float]], Any]):
        self.keep = keep  # 0: keep all
        self.primary = primary  # the task's primary metric, without the val_ prefix
        self.log_model = log_model  # (state, name, step, metrics) -> MLflow ModelInfo
        self.kept: list[tuple[int, str]] = []  # (epoch, model id), oldest first
        self.best: tuple[float, str] | None = None

    def state(self) -> dict:
        """What a resume checkpoint keeps of it."""
        return {"kept": self.kept, "best": self.best}

    def restore(self, run_id: str) -> None:
        """What a resumed run logged before: read from the store, the one record that cannot lag behind (models
        are logged in the background, after the resume checkpoint of their epoch is written)."""
        logged = artifacts.logged_checkpoints(run_id, f"val_{self.primary}")  # [(epoch, model id, value)]
        self.kept = [(epoch, model_id) for epoch, model_id, _ in logged]
        self.best = None
        for _, model_id, value in logged:
            if value is not None and (self.best is None or is_better(value, self.best[0], self.primary)):
                self.best = (value, model_id)

    def log(self, epoch: int, metrics: dict[str, float], state) -> str:
        """Log `state` (the model at the end of `epoch`) as checkpoint-epoch-<epoch>; returns its model id."""
        validation = {f"best_{k}": v for k, v in metrics.items() if k.startswith("val_")}  # the card's figures
        model_id = self.log_model(state, f"checkpoint-epoch-{epoch}", epoch, validation).model_id
        value = metrics[f"val_{self.primary}"]
        if self.best is None or is_better(value, self.best[0], self.primary):
            self.best = (value, model_id)
        self.kept.append((epoch, model_id))
        others = [(e, m) for e, m in self.kept if m != self.best[1]]
        while self.keep and len(others) > self.keep:
            _, oldest = others.pop(0)
            artifacts.delete_logged_model(oldest)
            self.kept = [(e, m) for e, m in self.kept if m != oldest]
        return model_id
