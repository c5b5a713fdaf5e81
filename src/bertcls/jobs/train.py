"""The train job: `bertcls.fine_tune` plus tracking — one MLflow run with params, per-epoch metrics in the
background, resume checkpoints, epoch models, figures, and the best epoch's model as a pyfunc logged model."""

from __future__ import annotations

import dataclasses
import logging
import time

import jax
import numpy as np
import pandas as pd

from bertcls.config import DEFAULT_EXPERIMENT, TrainConfig
from bertcls.config.saved import train_config_to_dict
from bertcls.data.tasks import PER_CLASS_METRICS, per_class_key
from bertcls.errors import ResumeError, TrackingUnreachable
from bertcls.evaluation import figures
from bertcls.export.model_card import CardFacts, base_licence, render
from bertcls.jobs.data_config import with_absolute_files
from bertcls.runtime import distributed
from bertcls.tracking import artifacts, runs
from bertcls.tracking.background import BackgroundLogger, wait_at_end_s
from bertcls.tracking.callback import MlflowCallback
from bertcls.tracking.checkpoints import RESUME_TAG, ResumeCheckpoints, local_checkpoint, resume_command, resume_source
from bertcls.tracking.epoch_models import EpochModels
from bertcls.train import fine_tune, resume
from bertcls.train.fine_tune import FineTuned, Setup
from bertcls.train.loop import fit
from bertcls.train.progress import ProgressBar, rate_label

log = logging.getLogger("bertcls")


@dataclasses.dataclass
class TrainOutcome:
    run_id: str
    model_uri: str
    best_epoch: int
    metrics: dict[str, float]
    wall_time_s: float
    epochs_run: int = 0  # fewer than epochs after early stopping or pruning


def train(
    config: TrainConfig,
    experiment: str | None = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
    system_metrics: bool = False,
    resume_run_id: str | None = None,
    callbacks: tuple = (),
    cluster: dict | None = None,
    parent_run_id: str | None = None,
    tags: dict[str, str] | None = None,
    teacher=None,
) -> TrainOutcome | None:
    """Fine-tune, evaluate each epoch, log everything and the best epoch's model to MLflow.

    resume_run_id: continue that KILLED or FAILED run from its latest checkpoint, with its own parameters.
    callbacks: more fit() callbacks (`bertcls.train.callbacks.Callback`), after the progress bar and MLflow's.
    cluster: coordinator / num_processes / process_id of a multi-process run (`bertcls.runtime.distributed`); in
    one, process 0 logs the run and returns its outcome, the others compute alongside and return None.
    parent_run_id, tags: a child run of that run (a sweep's trial) with these tags from its start.
    teacher: a `bertcls.train.distillation.Teacher` to distil (the distill job's).
    """
    distributed.initialize(**(cluster or {}))  # before anything touches a device
    started = time.perf_counter()
    config = dataclasses.replace(config, data=with_absolute_files(config.data))  # later jobs read them anywhere
    if resume_run_id and jax.process_count() > 1:
        raise ResumeError(
            "resume_run_id is not supported for multi-process runs yet (they write no resume checkpoint). Resume "
            "on one host, or start a new run."
        )
    source = resume_source(resume_run_id, config) if resume_run_id else None
    config = source.config if source is not None else config
    # Everything that can be wrong with the input is checked before a run exists.
    setup = fine_tune.prepare(config, artifacts.resolve_model, teacher)
    if not distributed.is_primary():  # the same computations, collectives included; MLflow is process 0's
        fine_tune.finish(setup, fit(setup.trainer, setup.data, config, list(callbacks)))
        return None
    fingerprint = resume.fingerprint(setup.trainer, setup.data, config.model, config.data.dataset or "files")
    start = None
    if source is not None:  # the last refusals (another model shape, other data) before the run is touched
        checkpoint_dir = local_checkpoint(source)
        resume.check_compatible(resume.read_record(checkpoint_dir), fingerprint, f"run {source.run_id}")
        start, _ = resume.restore(checkpoint_dir, setup.trainer)

    with runs.tracked_run(
        experiment, run_name, system_metrics=system_metrics, resume_run_id=resume_run_id, parent_run_id=parent_run_id
    ) as run:
        job = _TrackedTraining(setup, run.info.run_id, run.info.experiment_id, source)
        job.start(tags or {})
        finished = job.fit(start, fingerprint, callbacks)
        model_uri = job.log_results(finished)
    wall = time.perf_counter() - started
    log.info("run %s finished in %.1f s; best epoch %d", run.info.run_id, wall, finished.result.best_epoch)
    return TrainOutcome(
        run.info.run_id, model_uri, finished.result.best_epoch, finished.metrics, wall, len(finished.result.history)
    )


class _TrackedTraining:
    """One fine-tuning inside its MLflow run: what is logged before, during and after `fine_tune`'s fit."""

    def __init__(self, setup: Setup, run_id: str, experiment_id: str, source):
        self.setup, self.config, self.data = setup, setup.config, setup.data
        self.run_id, self.experiment_id, self.source = run_id, experiment_id, source
        self.datasets: dict = {}
        self.command = ""
        self.writer: ResumeCheckpoints | None = None  # set by fit(); log_results discards its checkpoint
        self.example_texts, self.example_pairs = fine_tune.example_texts(self.data)

    def start(self, tags: dict[str, str]) -> None:
        """Tags (the resume command among them), params, the train config and the dataset inputs."""
        warned = {"data_warnings": "; ".join(self.setup.data_warnings)[:5000]} if self.setup.data_warnings else {}
        runs.set_tags({**tags, **warned})
        tags = runs.get_run(self.run_id).data.tags  # `mlflow run` marks its runs PROJECT (and conda/uv: the env)
        env_manager = tags.get("mlflow.project.env", "local") if tags.get("mlflow.source.type") == "PROJECT" else None
        self.command = resume_command(self.run_id, self.experiment_id, env_manager)
        runs.set_tags({RESUME_TAG: self.command})  # the command that continues this run if it stops
        runs.log_params(
            {
                **self.config.flat_params(),
                "model_dir": str(self.setup.model_dir),
                "params_initialized": " ".join(self.setup.report.initialized) or "none",
                **self.setup.trainer.parameter_counts(),
                "effective_batch_size": self.config.effective_batch_size,
                **self._class_weight_params(),
            }
        )
        runs.log_train_config(train_config_to_dict(self.config))
        runs.set_job_tag("train")
        runs.set_environment_tags()
        self.datasets = runs.log_dataset_inputs(self.data)

    def _class_weight_params(self) -> dict[str, str]:
        """The resolved loss weight of each class (`class_weight_<label>`), so `balanced` is visible as numbers."""
        if self.setup.class_weights is None:
            return {}
        names = self.data.task.label_names
        return {
            per_class_key("class_weight", name): f"{weight:.6g}"
            for name, weight in zip(names, self.setup.class_weights, strict=True)
        }

    def log_model(self, state, name: str, step: int, metrics: dict[str, float], calibration=None):
        """Write the model of `state` with its tokenizer, reading settings and model card; log it as a pyfunc
        model (returns MLflow's ModelInfo)."""
        config, task = self.config, self.data.task
        with artifacts.staging_dir() as staging:
            model = self.setup.trainer.model(state)
            path = fine_tune.save_trained(self.setup, model, staging / "model", calibration)
            params = {k: str(v) for k, v in config.flat_params().items()}
            facts = CardFacts(
                config.model,
                base_licence(str(self.setup.model_dir)),
                task.name,
                tuple(task.label_names),
                params,
                metrics,
                self.run_id,
                step or None,
                task.kind,
                None if calibration is None else calibration.to_dict(),
            )
            (path / "model_card.md").write_text(render(facts, hugging_face=False), encoding="utf-8")
            return artifacts.log_model(path, self.example_texts, self.example_pairs, name=name, step=step)

    def fit(self, start, fingerprint: dict, callbacks: tuple) -> FineTuned:
        """Train with MLflow's callback and resume checkpoints; training never waits on the tracking server."""
        config, trainer, source = self.config, self.setup.trainer, self.source
        epoch_models = EpochModels(config.keep_checkpoints, self.data.task.primary_metric, self.log_model)
        if source is not None and config.log_checkpoints == "all":
            epoch_models.restore(self.run_id)
        background = BackgroundLogger(runs.tracking_uri())
        tracker = MlflowCallback(
            self.run_id,
            background,
            epoch_models.log if config.log_checkpoints == "all" else None,
            trainer.host_model_state,
            self.datasets.get("validation"),
            already_logged=runs.logged_metric_steps(self.run_id) if source else None,
        )
        for epoch, metrics in enumerate(start.history if start else [], 1):  # epochs an outage kept from the store
            tracker.log_epoch(epoch, metrics)
        writer = ResumeCheckpoints(
            self.run_id,
            trainer,
            fingerprint,
            lambda: {"logged_checkpoints": epoch_models.state()},
            background,
            current=source.checkpoint if source else None,
        )
        save_progress = writer.save if jax.process_count() == 1 else None  # multi-process: not yet (docs/scaling.md)
        progress = [ProgressBar(rate_label(self.data.task))]  # process 0's: one bar per job, not per host
        try:
            result = fit(trainer, self.data, config, [*progress, tracker, *callbacks], start, save_progress)
        except KeyboardInterrupt as interrupt:
            background.flush(wait_at_end_s())  # the checkpoint's upload, if the server answers
            interrupt.resume_command = self.command if writer.current else None  # the CLI prints it
            raise
        if not background.flush(wait_at_end_s()):
            raise TrackingUnreachable(
                _outage_paragraph(background, writer, self.run_id, self.command, len(result.history))
            )
        if background.failed:  # a call the store refused (not an outage) fails the job after training
            raise background.failed[0][1]
        self.writer = writer
        return fine_tune.finish(self.setup, result)

    def log_results(self, finished: FineTuned) -> str:
        """Baselines, figures, the final model and its linked metrics; ends the resume bookkeeping. Returns the
        model's URI."""
        result, metrics, task = finished.result, finished.metrics, self.data.task
        runs.log_metrics(
            {k: v for k, v in metrics.items() if k.startswith("baseline_") or k in ("temperature", "mean_threshold")}
        )
        runs.log_outputs(figures.learning_curves(result.history, task.primary_metric))
        if result.compile_log:  # every program this process compiled: kind, shape, seconds, persistent-cache hit
            runs.log_table(pd.DataFrame(result.compile_log), "compile_log.json")
        if task.token_level:
            splits = {"val": result.best_validation, **({"test": finished.test} if finished.test else {})}
            runs.log_outputs(figures.tagging_outputs(task, splits, result.best_epoch))
        elif task.multi_label:
            splits = {"val": result.best_validation, **({"test": finished.test} if finished.test else {})}
            runs.log_outputs(figures.multilabel_outputs(task, splits, finished.calibration))
            runs.log_dict(finished.calibration.to_dict(), "calibration.json")
        elif not task.is_regression:
            splits = {"val": result.best_validation, **({"test": finished.test} if finished.test else {})}
            temperature = finished.calibration.temperature
            runs.log_outputs(figures.classifier_outputs(task, splits, result.best_epoch, temperature))
            runs.log_dict(finished.calibration.to_dict(), "calibration.json")
        best = {k: v for k, v in metrics.items() if k.startswith("best_val_")}
        test = {k: v for k, v in metrics.items() if k.startswith("test_")}
        linked = self.config.log_checkpoints != "none"  # the final model is the best epoch's checkpoint
        step = result.best_epoch if linked else 0
        info = self.log_model(result.best_model_state, "model", step, {**best, **test}, finished.calibration)
        runs.log_metrics({"best_epoch": float(result.best_epoch)})
        model_id = info.model_id if linked else None
        artifacts.log_linked_metrics(best, result.best_epoch, model_id, self.datasets.get("validation"))
        if test:
            artifacts.log_linked_metrics(test, result.best_epoch, model_id, self.datasets.get("test"))
        held_out = {k: v for k, v in metrics.items() if k.startswith("calibration_")}  # calibration_fraction's split
        if held_out:
            artifacts.log_linked_metrics(held_out, result.best_epoch, model_id, self.datasets.get("calibration"))
        runs.set_tags({"model_uri": info.model_uri})
        runs.delete_tag(RESUME_TAG)
        self.writer.discard(self.run_id)
        return info.model_uri


def _outage_paragraph(background, writer, run_id: str, command: str, epochs: int) -> str:
    """What an unfinished run left where, and the one command that completes it."""
    since = time.strftime("%H:%M:%S", time.localtime(background.unreachable_since or time.time()))
    return (
        f"The tracking server {background.where} has been unreachable since {since} ({background.last_problem}), "
        f"so run {run_id} could not be completed there; training went on and nothing computed is lost. On this "
        f"machine: the resume checkpoint {writer.root / (writer.current or '')} holds the model, the optimizer "
        f"state and the metrics of all {epochs} epoch(s) ({background.pending} tracking calls were still waiting). "
        f"When the server answers again, run: {command} -- it logs what the run lacks and finishes it (no epoch "
        "is trained twice)."
    )


def describe(outcome: TrainOutcome) -> str:
    """The lines printed at the end of `train`."""
    shown = {  # one class's scores are many lines: the UI and the per-class tables hold them
        k: v
        for k, v in outcome.metrics.items()
        if k.startswith(("test_", "best_val_"))
        and not k.split("_", 2 if k.startswith("best") else 1)[-1].startswith(tuple(f"{m}_" for m in PER_CLASS_METRICS))
    }
    if "temperature" in outcome.metrics:
        shown["temperature"] = outcome.metrics["temperature"]
    lines = [f"run {outcome.run_id}: best epoch {outcome.best_epoch}, wall time {outcome.wall_time_s:.1f} s"]
    lines += [f"  {k} = {v:.4f}" for k, v in sorted(shown.items()) if np.isfinite(v)]
    lines.append(f"model: {outcome.model_uri}   (also runs:/{outcome.run_id}/model)")
    return "\n".join(lines)
