"""fit(): epochs, evaluation after each, best-so-far by the task's primary metric, early stopping.

It reports through callbacks only and never imports mlflow.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Protocol

import numpy as np

from bertcls.config import TrainConfig
from bertcls.data.batching import (
    FILL,
    TokenizedSplit,
    bucket_for,
    collate,
    padding_efficiency,
    place_on_mesh,
    plan_epoch,
)
from bertcls.data.pipeline import PreparedData
from bertcls.data.tasks import TaskSpec, metric_direction
from bertcls.inference import infer_outputs
from bertcls.metrics import compute_metrics, mean_loss
from bertcls.train.optim import learning_rate_schedule
from bertcls.train.steps import Steps


class Callback(Protocol):
    """What fit() reports; a callback implements any of these (the others are skipped)."""

    def on_train_start(self, info: dict[str, Any]) -> None: ...

    def on_epoch_start(self, epoch: int, epochs: int, batches: int) -> None: ...

    def on_batch_end(self, index: int, stats: dict[str, Any]) -> None: ...  # stats: device scalars

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None: ...


def _notify(callbacks: list, event: str, *args) -> None:
    for callback in callbacks:
        method = getattr(callback, event, None)
        if method is not None:
            method(*args)


@dataclasses.dataclass
class SplitPredictions:
    outputs: np.ndarray  # [T, L] logits, or [T, 1] scores, one row per text in the split's order
    labels: np.ndarray  # [T]
    loss: float
    metrics: dict[str, float]


@dataclasses.dataclass
class FitResult:
    history: list[dict[str, float]]
    best_epoch: int
    best_model_state: Any  # host copy of the best epoch's parameters
    best_validation: SplitPredictions
    compile_time_s: float
    stopped_early: bool


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    return math.ceil(num_examples / batch_size)


def predict_split(steps: Steps, split: TokenizedSplit, task: TaskSpec, batch_size: int, buckets) -> SplitPredictions:
    """Eval-mode outputs per text of `split` (windows averaged per text), with loss and metrics."""
    outputs = infer_outputs(  # compiles new shapes on first use
        split, lambda batch: steps.evaluate(place_on_mesh(batch, steps.mesh)), batch_size, buckets, task.num_labels
    )  # [T, C]
    labels = split.text_labels()  # [T]
    metrics = compute_metrics(task, outputs, labels, np.ones(len(labels)))
    return SplitPredictions(outputs, labels, mean_loss(task, outputs, labels), metrics)


def _is_better(value: float, best: float | None, direction: str) -> bool:
    if best is None:
        return True
    return value > best if direction == "max" else value < best


def fit(steps: Steps, data: PreparedData, config: TrainConfig, callbacks: list[Callback]) -> FitResult:
    train, validation = data.splits["train"], data.splits["validation"]
    total_steps = steps_per_epoch(len(train), config.effective_batch_size) * config.epochs
    micro = config.grad_accum_steps
    on_mesh = lambda batch: place_on_mesh(batch, steps.mesh, micro)  # noqa: E731  [k, B, S] when accumulating
    schedule = learning_rate_schedule(config.optim, total_steps)
    primary = data.task.primary_metric
    direction = metric_direction(primary)
    _notify(callbacks, "on_train_start", {"total_steps": total_steps, "buckets": list(data.buckets)})

    history: list[dict[str, float]] = []
    best_value: float | None = None
    best_epoch, best_state, best_validation, stale = 0, None, None, 0
    for epoch in range(1, config.epochs + 1):
        plans = plan_epoch(
            train.lengths, config.effective_batch_size, data.buckets, shuffle=True, seed=config.seed, epoch=epoch
        )
        one_plan_per_width = {bucket_for(int(train.lengths[p[p != FILL]].max()), data.buckets): p for p in plans}
        # compile every shape of this epoch before its timer starts
        steps.precompile("train", [on_mesh(collate(train, p, data.buckets)) for p in one_plan_per_width.values()])
        real_tokens = int(sum(int(train.lengths[p[p != FILL]].sum()) for p in plans))
        batches = (collate(train, plan, data.buckets) for plan in plans)  # gathered lazily, one at a time

        _notify(callbacks, "on_epoch_start", epoch, config.epochs, len(plans))
        start = time.perf_counter()
        loss_parts, grad_norms = [], []
        for i, batch in enumerate(batches):
            stats = steps.train(on_mesh(batch))
            loss_parts.append((stats["loss_sum"], stats["weight_sum"]))
            grad_norms.append(stats["grad_norm"])
            _notify(callbacks, "on_batch_end", i, stats)
        loss_sum = sum(float(s) for s, _ in loss_parts)  # the epoch's one host sync
        weight_sum = sum(float(w) for _, w in loss_parts)
        epoch_time = time.perf_counter() - start

        val = predict_split(steps, validation, data.task, config.eval_batch_size, data.buckets)
        metrics = {
            "train_loss": loss_sum / max(weight_sum, 1.0),
            "val_loss": val.loss,
            **{f"val_{name}": value for name, value in val.metrics.items()},
            "lr": float(schedule(epoch * len(plans) - 1)),
            "grad_norm": float(np.mean([float(g) for g in grad_norms])),
            "epoch_time_s": epoch_time,
            "train_examples_per_s": weight_sum / epoch_time,
            "train_tokens_per_s": real_tokens / epoch_time,
            "padding_efficiency": padding_efficiency(train.lengths, plans, data.buckets),
            "compile_time_s": steps.compile_seconds,  # cumulative: grows only when a new shape appears
        }
        history.append(metrics)
        _notify(callbacks, "on_epoch_end", epoch, metrics)

        if _is_better(val.metrics[primary], best_value, direction):
            best_value, best_epoch, best_validation, stale = val.metrics[primary], epoch, val, 0
            best_state = steps.host_model_state()
        else:
            stale += 1
            if config.early_stopping_patience and stale >= config.early_stopping_patience:
                return FitResult(history, best_epoch, best_state, best_validation, steps.compile_seconds, True)
    return FitResult(history, best_epoch, best_state, best_validation, steps.compile_seconds, False)
