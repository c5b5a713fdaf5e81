"""A run's life in MLflow: start (or resume) and end it, params, tags, metrics, dataset inputs, outputs."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException

import bertcls
from bertcls.data.pipeline import PreparedData
from bertcls.errors import TrackingUnreachable
from bertcls.runtime import liveness
from bertcls.runtime.interrupts import raising_interrupts
from bertcls.tracking.store_lock import ensure_store


@contextlib.contextmanager
def _without_env(name: str) -> Iterator[None]:
    saved = os.environ.pop(name, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[name] = saved


@contextlib.contextmanager
def tracked_run(
    experiment: str | None,
    run_name: str | None = None,
    fresh: bool = False,
    system_metrics: bool = False,
    resume_run_id: str | None = None,
    parent_run_id: str | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """Start (or, under `mlflow run`, resume) a run; end it FINISHED, KILLED on a signal, FAILED on error.

    fresh: a new run even under `mlflow run` (an evaluation inside `register` must not fill the register run).
    system_metrics: MLflow samples CPU, memory (and GPU) use in a thread while the run is active.
    resume_run_id: continue that run (status back to RUNNING). Under `mlflow run` without `--run-id`, the
    run MLflow made for this command is tagged as the launcher of the resume and left empty.
    parent_run_id: a child run of that one (a sweep's trial), in its experiment; nested in it when it is active.
    """
    launcher = os.environ.get("MLFLOW_RUN_ID")
    if resume_run_id and launcher and launcher != resume_run_id:
        mlflow.MlflowClient().set_tag(launcher, "bertcls_job", "resume")
        mlflow.MlflowClient().set_tag(launcher, "resumed_run_id", resume_run_id)
        mlflow.MlflowClient().set_tag(
            launcher,
            "mlflow.note.content",
            f"This command resumed run {resume_run_id}; its metrics and model are logged there.",
        )
    leave_launcher = fresh or (resume_run_id and launcher != resume_run_id)
    with _without_env("MLFLOW_RUN_ID") if leave_launcher else contextlib.nullcontext(), raising_interrupts():
        fresh_top_level = not (resume_run_id or parent_run_id or mlflow.active_run())
        if experiment and fresh_top_level and "MLFLOW_RUN_ID" not in os.environ:
            ensure_store(experiment)  # a new sqlite store is created under a lock: concurrent jobs both start
            mlflow.set_experiment(experiment)
        under_mlflow_run = launcher is not None and not leave_launcher  # `mlflow run` ends this very run
        if parent_run_id:
            active = mlflow.active_run()
            nested = active is not None and active.info.run_id == parent_run_id
            where = {} if nested else {"experiment_id": mlflow.MlflowClient().get_run(parent_run_id).info.experiment_id}
            run = mlflow.start_run(
                run_name=run_name, nested=True, parent_run_id=parent_run_id, log_system_metrics=system_metrics, **where
            )
        else:
            run = mlflow.start_run(run_id=resume_run_id, run_name=run_name, log_system_metrics=system_metrics)
        try:
            yield run
        except KeyboardInterrupt:
            mlflow.end_run(status="KILLED")
            if under_mlflow_run:  # `mlflow run` would overwrite KILLED with FAILED: see bertcls.tracking.status_guard
                from bertcls.tracking import status_guard

                status_guard.start(run.info.run_id)
            raise
        except TrackingUnreachable:
            _end_run_if_reachable("FAILED")  # the server is (or just was) down: one quick try, never a wait
            raise
        except BaseException:
            mlflow.end_run(status="FAILED")
            raise
        else:
            mlflow.end_run(status="FINISHED")


@contextlib.contextmanager
def _http_fail_fast(timeout_s: int = 5) -> Iterator[None]:
    """MLflow's HTTP calls in the block: one try of at most `timeout_s` (its retries and timeout are env-set)."""
    names = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout_s)}
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _end_run_if_reachable(status: str) -> None:
    """End the active run with `status` if the store answers at once; else leave it (MLflow's stack is popped
    either way, so nothing retries at exit). A RUNNING run whose process is gone resumes like a FAILED one."""
    with _http_fail_fast(), contextlib.suppress(Exception):
        mlflow.end_run(status=status)


def log_params(params: dict[str, Any]) -> None:
    """Log params not already on the run (`mlflow run` logs -P values itself; re-logging a key raises)."""
    run = mlflow.active_run()
    existing = mlflow.MlflowClient().get_run(run.info.run_id).data.params
    mlflow.log_params({k: "" if v is None else str(v) for k, v in params.items() if k not in existing})


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    mlflow.log_metrics(metrics, step=step)


def set_tags(tags: dict[str, str]) -> None:
    mlflow.set_tags(tags)


def delete_tag(key: str) -> None:
    """Remove a tag from the active run (if it has it)."""
    if key in mlflow.MlflowClient().get_run(mlflow.active_run().info.run_id).data.tags:
        mlflow.delete_tag(key)


def log_dict(data: dict, artifact_file: str) -> None:
    mlflow.log_dict(data, artifact_file)


def log_artifact(path: Path, artifact_path: str | None = None) -> None:
    mlflow.log_artifact(str(path), artifact_path)


def log_outputs(outputs: dict[str, Any]) -> None:
    """Log what `bertcls.evaluation.figures` made: figures as images, tables as JSON (each figure then closed)."""
    import matplotlib.pyplot as plt

    for path, output in outputs.items():
        if isinstance(output, pd.DataFrame):
            log_table(output, path)
        else:
            mlflow.log_figure(output, path)
            plt.close(output)


def log_table(table: pd.DataFrame, artifact_file: str) -> None:
    """A table artifact the MLflow UI shows as a table (and compares across runs)."""
    mlflow.log_table(table, artifact_file)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).resolve().parent
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def set_environment_tags() -> None:
    import flax
    import jax

    devices = jax.devices()
    tags = {
        "bertcls_version": bertcls.__version__,
        "jax_version": jax.__version__,
        "flax_version": flax.__version__,
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "device_count": str(len(devices)),
        "process_count": str(jax.process_count()),
    }
    commit = _git_commit()
    if commit:
        tags["git_commit"] = commit
    mlflow.set_tags({**tags, **liveness.process_tags()})


def set_job_tag(job: str) -> None:
    """`bertcls_job` on the active run: train runs compete for registration, other jobs never do."""
    mlflow.set_tag("bertcls_job", job)


def running_runs(experiment: str | None) -> list:
    """RUNNING runs of one experiment, or of all experiments."""
    client = mlflow.MlflowClient()
    if experiment:
        found = client.get_experiment_by_name(experiment)
        ids = [found.experiment_id] if found else []
    else:
        ids = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(ids, "attributes.status = 'RUNNING'", max_results=5000)) if ids else []


def end_refused_run(run_id: str, message: str, job: str) -> None:
    """End a run that input was refused for before its job did anything (the run `mlflow run` makes first) FAILED,
    tagged refused_input with the error as its description. A run with metrics is left to its job; a store that
    does not answer at once is left alone (the error is what matters)."""
    with _http_fail_fast(), contextlib.suppress(Exception):
        client = mlflow.MlflowClient()
        run = client.get_run(run_id)
        if run.data.metrics:
            return
        client.set_tag(run_id, "refused_input", "true")
        if "bertcls_job" not in run.data.tags:
            client.set_tag(run_id, "bertcls_job", job)
        client.set_tag(run_id, "mlflow.note.content", f"Refused before {job} started: {message}")
        client.set_terminated(run_id, "FAILED")


def mark_failed(run_id: str, reason: str) -> None:
    """End a stale run FAILED, saying why in a tag."""
    client = mlflow.MlflowClient()
    client.set_tag(run_id, "stale_reason", reason)
    client.set_terminated(run_id, "FAILED")


# What a store says when two runs insert the same dataset row at once (PostgreSQL, sqlite, MySQL).
_DATASET_RACE_MARKERS = ("UniqueViolation", "UNIQUE constraint failed", "duplicate key", "Duplicate entry")


def _log_input_once_shared(dataset: Any, split: str, attempts: int = 5) -> None:
    """log_input, retried when a concurrent run inserted the same dataset first.

    MLflow's store looks a dataset up by (experiment, name, digest) and inserts it when absent, in one
    transaction without a lock: two runs starting together on one experiment both insert, one fails on
    the unique key. On retry the lookup finds the other run's row and only the input link is written.
    """
    for attempt in range(attempts):
        try:
            mlflow.log_input(dataset, context=split)
            return
        except MlflowException as error:
            if attempt == attempts - 1 or not any(marker in str(error) for marker in _DATASET_RACE_MARKERS):
                raise
            time.sleep(0.2 * (attempt + 1))


def log_file_input(path: Path, fmt: str, digest: str, context: str) -> None:
    """A table file the run read, as an MLflow dataset input (name, source path, digest, format) without
    loading it: a scored file may hold millions of rows."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(str(Path(path).resolve()))
    _log_input_once_shared(MetaDataset(source, name=Path(path).name, digest=digest), context)
    mlflow.set_tag("input_format", fmt)


def log_dataset_inputs(data: PreparedData) -> dict[str, Any]:
    """One MLflow dataset input per split (name, source, digest, row count as the profile); returns them by split
    (metrics computed on a split are linked to its dataset)."""
    datasets = {}
    targets = "tags" if data.task.token_level else "label"
    for split, rows in data.texts.items():
        frame = rows.to_pandas()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "source can be interpreted in multiple ways"
            try:
                dataset = mlflow.data.from_pandas(frame, source=data.source.uri, name=data.source.name, targets=targets)
            except Exception:  # noqa: BLE001 - a hub id is not a resolvable source URI for mlflow
                dataset = mlflow.data.from_pandas(frame, name=data.source.name, targets=targets)
        _log_input_once_shared(dataset, split)
        datasets[split] = dataset
    sizes = {f"n_{split}": rows.num_texts for split, rows in data.splits.items()}
    sizes.update({f"n_{split}_windows": len(rows) for split, rows in data.splits.items() if rows.documents is not None})
    cleaning = {
        "duplicates_dropped": data.stats.duplicates_dropped,
        "empty_texts_dropped": sum(data.stats.empty_text_dropped.values()),
        "missing_labels_dropped": sum(data.stats.missing_label_dropped.values()),
        "split_created": ",".join(data.stats.created_splits) or "none",
        "task_kind": data.task.kind,  # what `task` (auto, text, ner) resolved to
        "label_names": ",".join(data.task.label_names),
        "primary_metric": data.task.primary_metric,
    }
    if data.task.token_level:  # the scheme the training tags follow, which tag_decoding=viterbi keeps to
        cleaning["tag_scheme"] = data.task.tag_scheme or "none"
    log_params({**sizes, **cleaning})
    mlflow.set_tags({"dataset": data.source.name, "task": cleaning["task_kind"]})
    return datasets


def log_train_config(saved: dict[str, Any]) -> None:
    """The resolved train config as one JSON artifact (beside the flat params, which stay for the UI)."""
    from bertcls.config.saved import TRAIN_CONFIG_ARTIFACT

    mlflow.log_dict(saved, TRAIN_CONFIG_ARTIFACT)


def attach_run(run_id: str) -> None:
    """Make `run_id` this thread's active run (MLflow keeps one per thread) without ending or restarting it."""
    active = mlflow.active_run()
    if active is None or active.info.run_id != run_id:
        mlflow.start_run(run_id=run_id, log_system_metrics=False)


def log_params_to(run_id: str, params: dict[str, Any]) -> None:
    """Params not already on the run (re-logging a key with another value raises)."""
    existing = mlflow.MlflowClient().get_run(run_id).data.params
    fresh = [Param(k, "" if v is None else str(v)) for k, v in params.items() if k not in existing]
    if fresh:
        mlflow.MlflowClient().log_batch(run_id, params=fresh)


def log_metrics_to(run_id: str, metrics: dict[str, float]) -> None:
    """Metrics on a run that is not the active one (a finished training run: its model's export report)."""
    stamp = int(time.time() * 1000)
    batch = [Metric(k, float(v), stamp, 0) for k, v in metrics.items()]
    mlflow.MlflowClient().log_batch(run_id, metrics=batch)


def tracking_uri() -> str:
    return mlflow.get_tracking_uri()


def experiment_name(experiment_id: str) -> str:
    return mlflow.MlflowClient().get_experiment(experiment_id).name


def get_run(run_id: str):
    """The run, or None if no run has this id in the tracking store."""
    try:
        return mlflow.MlflowClient().get_run(run_id)
    except MlflowException:
        return None


def logged_metric_steps(run_id: str) -> dict[str, set[int]]:
    """For each metric the run has, the steps (epochs) already logged: a resumed run logs each point once, and
    completes an epoch an outage cut in half (its train metrics stored, its val_* ones not)."""
    client = mlflow.MlflowClient()
    keys = client.get_run(run_id).data.metrics
    return {key: {m.step for m in client.get_metric_history(run_id, key)} for key in keys}


def set_run_tags(run_id: str, tags: dict[str, str]) -> None:
    """Tags on a run that is not the active one (a sweep's child)."""
    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, str(value))


def find_runs(experiment_ids: list[str], tags: dict[str, str]):
    """Runs of these experiments carrying all these tags."""
    query = " and ".join(f"tags.{k} = '{v}'" for k, v in tags.items())
    return mlflow.MlflowClient().search_runs(experiment_ids, query)


def log_failed_run(parent_run_id: str, run_name: str, params: dict, tags: dict[str, str], error: str) -> str:
    """A FAILED child run for a trial that failed before its train job could start one."""
    client = mlflow.MlflowClient()
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    run = client.create_run(
        experiment_id, run_name=run_name, tags={"mlflow.parentRunId": parent_run_id, **tags, "error": error[:5000]}
    )
    for key, value in params.items():
        client.log_param(run.info.run_id, key, str(value))
    client.set_terminated(run.info.run_id, "FAILED")
    return run.info.run_id
