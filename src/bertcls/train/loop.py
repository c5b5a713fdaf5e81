"""fit(): epochs, evaluation after each, best-so-far by the task's primary metric, early stopping, resume.

It reports through callbacks only and never imports mlflow. Its host-side progress (`FitProgress`) is
handed to `save_progress` after every epoch and when a SIGTERM/SIGINT waits (at the next step boundary);
`fit(..., start=progress)` continues from one with the same result as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

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
from bertcls.data.tags import OUTSIDE
from bertcls.data.tasks import TaskSpec, is_better
from bertcls.evaluation.metrics import compute_metrics, mean_loss
from bertcls.evaluation.tagging import predicted_tags, tagging_metrics, word_loss
from bertcls.runtime import interrupts
from bertcls.train.callbacks import Callback, notify
from bertcls.train.inference import infer_outputs, infer_word_outputs
from bertcls.train.optim import learning_rate_schedule
from bertcls.train.steps import Trainer


@dataclasses.dataclass
class SplitPredictions:
    outputs: np.ndarray  # [T, L] logits, or [T, 1] scores, one row per text in the split's order (tagging: [W, L])
    labels: np.ndarray  # [T] (tagging: [W], every word's tag)
    loss: float
    metrics: dict[str, float]
    word_counts: np.ndarray | None = None  # tagging: [T] words per sentence


@dataclasses.dataclass
class FitResult:
    history: list[dict[str, float]]
    best_epoch: int
    best_model_state: Any  # host copy of the best epoch's parameters
    best_validation: SplitPredictions
    compile_time_s: float
    stopped_early: bool
    compile_log: list[dict] = dataclasses.field(default_factory=list)  # Trainer.compile_log: one row per program


@dataclasses.dataclass
class FitProgress:
    """Where training stands, on the host: with the device state it is everything a resume needs.

    Data order and dropout keys are functions of (seed, epoch) and of the optimizer step, so they need no
    state of their own. Loss sums are kept as Python floats summed in batch order, so a resumed epoch
    reports the same train_loss as an uninterrupted one.
    """

    epoch: int = 1  # the epoch in progress (epochs + 1 once training is over)
    next_batch: int = 0  # batches of `epoch` already trained
    loss_sum: float = 0.0  # of `epoch`'s trained batches
    weight_sum: float = 0.0
    grad_norms: list[float] = dataclasses.field(default_factory=list)
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)  # one entry per finished epoch
    best_value: float | None = None
    best_epoch: int = 0
    best_state: Any = None  # host copy of the best epoch's parameters
    best_validation: SplitPredictions | None = None
    stale: int = 0  # epochs since the best one
    stopped_early: bool = False
    epoch_seconds: float = 0.0  # training time spent in `epoch` before this session (a resumed epoch counts it)


IN_FLIGHT = 2  # train steps dispatched ahead of the device (async dispatch): enough to keep it busy


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    return math.ceil(num_examples / batch_size)


def predict_split(steps: Trainer, split: TokenizedSplit, task: TaskSpec, batch_size: int, buckets) -> SplitPredictions:
    """Eval-mode outputs per text of `split` (windows averaged per text), with loss and metrics; per word for a
    tagging split."""
    if task.token_level:
        return _predict_words(steps, split, task, batch_size, buckets)
    outputs = infer_outputs(  # compiles new shapes on first use
        split, lambda batch: steps.evaluate(place_on_mesh(batch, steps.mesh)), batch_size, buckets, task.num_labels
    )  # [T, C]
    labels = split.text_labels()  # [T]
    metrics = compute_metrics(task, outputs, labels, np.ones(len(labels)))
    return SplitPredictions(outputs, labels, mean_loss(task, outputs, labels), metrics)


def _predict_words(steps: Trainer, split, task: TaskSpec, batch_size: int, buckets) -> SplitPredictions:
    forward = lambda batch: steps.evaluate(place_on_mesh(batch, steps.mesh))  # noqa: E731
    fallback = task.label_names.index(OUTSIDE) if OUTSIDE in task.label_names else 0
    outputs, scored = infer_word_outputs(split, forward, batch_size, buckets, task.num_labels, fallback)  # [W, C]
    labels = split.word_labels
    metrics = tagging_metrics(task, predicted_tags(task, outputs, split.word_counts), labels, split.word_counts)
    return SplitPredictions(outputs, labels, word_loss(outputs, labels, scored), metrics, split.word_counts)


def _result(progress: FitProgress, steps: Trainer) -> FitResult:
    return FitResult(
        progress.history,
        progress.best_epoch,
        progress.best_state,
        progress.best_validation,
        steps.compile_seconds,
        progress.stopped_early,
        list(steps.compile_log),
    )


def fit(
    steps: Trainer,
    data: PreparedData,
    config: TrainConfig,
    callbacks: list[Callback],
    start: FitProgress | None = None,
    save_progress=None,
) -> FitResult:
    """Train `config.epochs` epochs (or what remains after `start`), evaluating after each.

    save_progress(progress), when given, is called after every epoch and, when a SIGTERM/SIGINT arrives, at
    the next step boundary; the signal is then raised (RunInterrupted).
    """
    train, validation = data.splits["train"], data.splits["validation"]
    total_steps = steps_per_epoch(len(train), config.effective_batch_size) * config.epochs
    micro = config.grad_accum_steps
    on_mesh = lambda batch: place_on_mesh(batch, steps.mesh, micro)  # noqa: E731  [k, B, S] when accumulating
    schedule = learning_rate_schedule(config.optim, total_steps)
    primary = data.task.primary_metric
    notify(callbacks, "on_train_start", {"total_steps": total_steps, "buckets": list(data.buckets)})

    progress = start if start is not None else FitProgress()
    with interrupts.signals_deferred():  # a signal stops the loop at a step boundary, after a checkpoint
        while progress.epoch <= config.epochs and not progress.stopped_early:
            timing = _run_epoch(steps, data, config, callbacks, progress, on_mesh, save_progress)
            epoch = progress.epoch
            val = predict_split(steps, validation, data.task, config.eval_batch_size, data.buckets)
            plans_per_epoch = steps_per_epoch(len(train), config.effective_batch_size)
            metrics = {
                "train_loss": progress.loss_sum / max(progress.weight_sum, 1.0),
                "val_loss": val.loss,
                **{f"val_{name}": value for name, value in val.metrics.items()},
                "lr": float(schedule(epoch * plans_per_epoch - 1)),
                "grad_norm": float(np.mean(progress.grad_norms)),
                **timing,
                "compile_time_s": steps.compile_seconds,  # cumulative: grows only when a new shape appears
            }
            progress.history.append(metrics)
            if is_better(val.metrics[primary], progress.best_value, primary):
                progress.best_value, progress.best_epoch, progress.best_validation = val.metrics[primary], epoch, val
                progress.best_state, progress.stale = steps.host_model_state(), 0
            else:
                progress.stale += 1
                patience = config.early_stopping_patience
                progress.stopped_early = bool(patience and progress.stale >= patience)
            progress.epoch, progress.next_batch, progress.epoch_seconds = epoch + 1, 0, 0.0
            progress.loss_sum, progress.weight_sum, progress.grad_norms = 0.0, 0.0, []
            if save_progress is not None:  # the epoch is on disk before anything reports it
                save_progress(progress)
            notify(callbacks, "on_epoch_end", epoch, metrics)
            if any(getattr(callback, "stop_training", False) for callback in callbacks):  # e.g. a sweep's pruner
                progress.stopped_early = True
            interrupts.raise_pending()
    return _result(progress, steps)


def _run_epoch(
    steps: Trainer, data: PreparedData, config: TrainConfig, callbacks, progress: FitProgress, on_mesh, save_progress
) -> dict[str, float]:
    """Train the rest of `progress.epoch`, updating its sums; on a waiting signal, save progress and raise.

    Returns the epoch's timing metrics: of the whole epoch, a resumed one included (its earlier part's time is
    in the progress)."""
    train = data.splits["train"]
    epoch = progress.epoch
    plans = plan_epoch(
        train.lengths, config.effective_batch_size, data.buckets, shuffle=True, seed=config.seed, epoch=epoch
    )
    one_plan_per_width = {bucket_for(int(train.lengths[p[p != FILL]].max()), data.buckets): p for p in plans}
    # compile every shape of this epoch before its timer starts
    steps.precompile("train", [on_mesh(collate(train, p, data.buckets)) for p in one_plan_per_width.values()])
    remaining = plans[progress.next_batch :]
    real_tokens = int(sum(int(train.lengths[p[p != FILL]].sum()) for p in plans))  # of the whole epoch
    real_rows = int(sum(int((p != FILL).sum()) for p in plans))  # examples (windows), not labelled words
    batches = (collate(train, plan, data.buckets) for plan in remaining)  # gathered lazily, one at a time

    notify(callbacks, "on_epoch_start", epoch, config.epochs, len(plans))
    started, before = time.perf_counter(), progress.epoch_seconds
    loss_parts, grad_norms = [], []

    def settle() -> float:
        """Fold this session's device scalars into the progress (one host sync); returns the weight added."""
        weights = [float(w) for _, w in loss_parts]
        progress.loss_sum = sum((float(s) for s, _ in loss_parts), progress.loss_sum)
        progress.weight_sum = sum(weights, progress.weight_sum)
        progress.grad_norms += [float(g) for g in grad_norms]
        progress.next_batch += len(loss_parts)
        loss_parts.clear()
        grad_norms.clear()
        return sum(weights)

    for i, batch in enumerate(batches, start=progress.next_batch):
        stats = steps.train(on_mesh(batch))
        loss_parts.append((stats["loss_sum"], stats["weight_sum"]))
        grad_norms.append(stats["grad_norm"])
        notify(callbacks, "on_batch_end", i, stats)
        if len(loss_parts) > IN_FLIGHT:  # keep the host near the device: a signal then stops within a step or two
            loss_parts[-IN_FLIGHT - 1][0].block_until_ready()
        if interrupts.pending() and i + 1 < len(plans):
            settle()
            progress.epoch_seconds = before + time.perf_counter() - started
            if save_progress is not None:
                save_progress(progress)
            interrupts.raise_pending()
    settle()
    elapsed = before + time.perf_counter() - started  # the whole epoch's training time, across a resume
    return {
        "epoch_time_s": elapsed,
        "train_examples_per_s": real_rows / elapsed,  # real examples of the whole epoch
        "train_tokens_per_s": real_tokens / elapsed,
        "padding_efficiency": padding_efficiency(train.lengths, plans, data.buckets),
    }
