"""The only mlflow import on the training path: params, tags, dataset inputs, metrics, figures, model."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Param
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

import bertcls
from bertcls import liveness
from bertcls.data.pipeline import PreparedData
from bertcls.errors import TrackingUnreachable
from bertcls.interrupts import raising_interrupts, signals_deferred
from bertcls.store import ensure_store

RUNTIME_PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "safetensors",
    "transformers",
    "tokenizers",
    "numpy",
    "pandas",
    "mlflow",
    "scikit-learn",
    "scipy",
)


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
        mlflow.MlflowClient().set_tag(launcher, "mlflow.note.content", f"This command resumed run {resume_run_id}; "
                                      "its metrics and model are logged there.")  # fmt: skip
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
            run = mlflow.start_run(run_name=run_name, nested=True, parent_run_id=parent_run_id,
                                   log_system_metrics=system_metrics, **where)  # fmt: skip
        else:
            run = mlflow.start_run(run_id=resume_run_id, run_name=run_name, log_system_metrics=system_metrics)
        try:
            yield run
        except KeyboardInterrupt:
            mlflow.end_run(status="KILLED")
            if under_mlflow_run:  # `mlflow run` would overwrite KILLED with FAILED: see bertcls.status_guard
                from bertcls import status_guard

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


def log_dataset_inputs(data: PreparedData) -> dict[str, Any]:
    """One MLflow dataset input per split (name, source, digest, row count as the profile); returns them by split
    (metrics computed on a split are linked to its dataset)."""
    datasets = {}
    for split, rows in data.texts.items():
        frame = rows.to_pandas()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "source can be interpreted in multiple ways"
            try:
                dataset = mlflow.data.from_pandas(frame, source=data.source.uri, name=data.source.name, targets="label")
            except Exception:  # noqa: BLE001 - a hub id is not a resolvable source URI for mlflow
                dataset = mlflow.data.from_pandas(frame, name=data.source.name, targets="label")
        _log_input_once_shared(dataset, split)
        datasets[split] = dataset
    sizes = {f"n_{split}": rows.num_texts for split, rows in data.splits.items()}
    sizes.update({f"n_{split}_windows": len(rows) for split, rows in data.splits.items() if rows.documents is not None})
    cleaning = {
        "duplicates_dropped": data.stats.duplicates_dropped,
        "empty_texts_dropped": sum(data.stats.empty_text_dropped.values()),
        "missing_labels_dropped": sum(data.stats.missing_label_dropped.values()),
        "split_created": ",".join(data.stats.created_splits) or "none",
        "task": "regression" if data.task.is_regression else "classification",
        "label_names": ",".join(data.task.label_names),
        "primary_metric": data.task.primary_metric,
    }
    log_params({**sizes, **cleaning})
    mlflow.set_tags({"dataset": data.source.name, "task": cleaning["task"]})
    return datasets


def log_train_config(saved: dict[str, Any]) -> None:
    """The resolved train config as one JSON artifact (beside the flat params, which stay for the UI)."""
    from bertcls.settings import TRAIN_CONFIG_ARTIFACT

    mlflow.log_dict(saved, TRAIN_CONFIG_ARTIFACT)


class MlflowCallback:
    """fit() callback: buckets and step count as params, every epoch's metrics with step=epoch, all through the
    background logger (`bertcls.background_logging`), so training never waits on the tracking server.

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
        already_logged: set[int] = frozenset(),
    ):
        self.run_id, self.background = run_id, background
        self.checkpoint, self.snapshot = checkpoint, snapshot
        self.validation_dataset = validation_dataset
        self.already_logged = already_logged  # epochs a resumed run logged before its last checkpoint was written

    def on_train_start(self, info: dict[str, Any]) -> None:
        params = {"buckets": " ".join(map(str, info["buckets"])), "total_steps": info["total_steps"]}
        self.background.submit("the bucket params", log_params_to, self.run_id, params)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.log_epoch(epoch, metrics, self.snapshot() if self.checkpoint else None)

    def log_epoch(self, epoch: int, metrics: dict[str, float], state=None) -> None:
        """Hand epoch `epoch`'s metrics (and its model, if checkpointing) to the background logger, once."""
        if epoch in self.already_logged:  # each epoch's metrics once, even across a resume
            return
        self.already_logged = {*self.already_logged, epoch}
        stamp = int(time.time() * 1000)  # when computed: a late upload keeps the time, and a retry is no new point
        self.background.submit(f"epoch {epoch}'s metrics", self._log_epoch, epoch, dict(metrics), state, stamp)

    def _log_epoch(self, epoch: int, metrics: dict[str, float], state, stamp: int) -> None:
        model_id = None
        if self.checkpoint is not None and state is not None:
            attach_run(self.run_id)  # logging a model needs the run active in this (the worker's) thread
            model_id = self.checkpoint(epoch, metrics, state)
        validation = {k: v for k, v in metrics.items() if k.startswith("val_")}
        others = {k: v for k, v in metrics.items() if k not in validation}
        mlflow.log_metrics(others, step=epoch, run_id=self.run_id, timestamp=stamp)
        linked = {"model_id": model_id, "dataset": self.validation_dataset} if model_id else {}
        mlflow.log_metrics(validation, step=epoch, run_id=self.run_id, timestamp=stamp, **linked)
        for key, value in liveness.heartbeat_tag().items():
            mlflow.MlflowClient().set_tag(self.run_id, key, value)


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


def logged_checkpoints(run_id: str, metric: str) -> list[tuple[int, str, float | None]]:
    """(epoch, model id, its `metric`) of the run's live checkpoint-epoch-<n> logged models, oldest first."""
    run = mlflow.MlflowClient().get_run(run_id)
    found = []
    for model in mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list"):
        if model.source_run_id == run_id and model.name.startswith("checkpoint-epoch-"):
            value = next((m.value for m in model.metrics or [] if m.key == metric), None)
            found.append((int(model.name.rsplit("-", 1)[1]), model.model_id, value))
    return sorted(found)


def log_linked_metrics(metrics: dict[str, float], step: int, model_id: str | None, dataset) -> None:
    """Metrics of the run, linked to a logged model and the dataset they were computed on when there is one."""
    if model_id is None:
        mlflow.log_metrics(metrics, step=step)
    else:
        mlflow.log_metrics(metrics, step=step, model_id=model_id, dataset=dataset)


def log_learning_curves(history: list[dict[str, float]], primary: str) -> None:
    epochs = np.arange(1, len(history) + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train_loss")
    left.plot(epochs, [h["val_loss"] for h in history], marker="o", label="val_loss")
    left.set(xlabel="epoch", ylabel="loss", title="Loss")
    left.legend()
    right.plot(epochs, [h[f"val_{primary}"] for h in history], marker="o", color="tab:green")
    right.set(xlabel="epoch", ylabel=f"val_{primary}", title=f"Validation {primary}")
    for axis in (left, right):
        axis.set_xticks(epochs)
        axis.grid(alpha=0.3)
    fig.tight_layout()
    mlflow.log_figure(fig, "figures/learning_curves.png")
    plt.close(fig)


def log_mlm_curve(history: list[dict[str, float]]) -> None:
    """Held-out (from epoch 0, before training) and train MLM loss per epoch, as figures/mlm_loss.png."""
    fig, axis = plt.subplots(figsize=(5, 4))
    axis.plot(range(len(history)), [h["val_mlm_loss"] for h in history], marker="o", label="val_mlm_loss")
    axis.plot(range(1, len(history)), [h["train_mlm_loss"] for h in history[1:]], marker="o", label="train_mlm_loss")
    axis.set(xlabel="epoch (0 = before training)", ylabel="MLM loss (nats per predicted token)", title="Masked LM")
    axis.set_xticks(range(len(history)))
    axis.grid(alpha=0.3)
    axis.legend()
    fig.tight_layout()
    mlflow.log_figure(fig, "figures/mlm_loss.png")
    plt.close(fig)


CONFUSION_FIGURE_MAX_CLASSES = 30  # beyond, a figure is unreadable (and 500 classes took 14 GB to draw)


def log_confusion_matrix(
    labels: np.ndarray, predictions: np.ndarray, names: tuple[str, ...], split: str, title: str | None = None
) -> str:
    """figures/<split>_confusion_matrix.png, or above CONFUSION_FIGURE_MAX_CLASSES classes the table
    <split>_top_confusions.json (the 50 most frequent mistakes); returns the artifact's path."""
    from sklearn.metrics import ConfusionMatrixDisplay

    if len(names) > CONFUSION_FIGURE_MAX_CLASSES:
        from bertcls.metrics import top_confusions

        path = f"{split}_top_confusions.json"
        log_table(top_confusions(labels, predictions, names), path)
        return path
    fig, axis = plt.subplots(figsize=(1.2 * len(names) + 3, 1.2 * len(names) + 2.5))
    ConfusionMatrixDisplay.from_predictions(
        labels,
        predictions,
        labels=list(range(len(names))),
        display_labels=list(names),
        ax=axis,
        colorbar=False,
        xticks_rotation=45 if len(names) > 3 else "horizontal",
    )
    axis.set_title(title or f"{split} confusion matrix")
    fig.tight_layout()
    path = f"figures/{split}_confusion_matrix.png"
    mlflow.log_figure(fig, path)
    plt.close(fig)
    return path


def pip_requirements() -> list[str]:
    """Pinned runtime requirements of the logged model; torch is never among them."""
    pins = []
    for name in RUNTIME_PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            pins.append(f"{name}=={importlib.metadata.version(name)}")
    return pins


def log_model(
    model_dir: Path, example_texts: list[str], example_pairs: list[str] | None, name: str = "model", step: int = 0
):
    """Log our saved model as a pyfunc logged model (signature, input example, code) at `step` (an epoch);
    returns MLflow's ModelInfo (`model_uri`, `model_id`)."""
    from bertcls.predict import Predictor
    from bertcls.pyfunc import MODEL_ARTIFACT, predictions_frame

    # The signature declares outputs only: inputs are checked by name in our predict (bertcls.inputs), so a
    # list of strings and a DataFrame with a `text` column both work and a wrong column is refused.
    columns = {"text": list(example_texts)}
    if example_pairs is not None:
        columns["text_pair"] = list(example_pairs)
    example = pd.DataFrame(columns)
    predictor = Predictor.from_dir(model_dir)
    output = predictions_frame(predictor, predictor.predict(example_texts, example_pairs))
    package = Path(bertcls.__file__).resolve().parent
    with signals_deferred(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "add type hints to predict": we give a signature
        info = mlflow.pyfunc.log_model(
            name=name,
            step=step,
            python_model=str(package / "pyfunc_model.py"),
            artifacts={MODEL_ARTIFACT: str(model_dir)},
            code_paths=[str(package)],
            signature=infer_signature(model_output=output),
            input_example=example,
            pip_requirements=pip_requirements(),
        )
    return info


@contextlib.contextmanager
def staging_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bertcls-model-") as tmp:
        yield Path(tmp)


RESUME_DIR = "resume"  # the run's artifact folder of its latest resume checkpoint
RESUME_POINTER = f"{RESUME_DIR}/latest.json"


def _artifact_repository(run_id: str):
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(mlflow.MlflowClient().get_run(run_id).info.artifact_uri)


def sync_resume_checkpoint(run_id: str, local_dir: Path, previous: str | None) -> None:
    """Copy a complete checkpoint directory to the run's artifacts, point `resume/latest.json` at it, then delete
    the previous one (where the artifact store can delete). A signal waits until this is done."""
    client = mlflow.MlflowClient()
    with signals_deferred():
        client.log_artifacts(run_id, str(local_dir), f"{RESUME_DIR}/{local_dir.name}")
        client.log_dict(run_id, {"checkpoint": local_dir.name}, RESUME_POINTER)  # only names complete uploads
        if previous and previous != local_dir.name:
            delete_artifacts(run_id, f"{RESUME_DIR}/{previous}")


def delete_artifacts(run_id: str, path: str) -> None:
    """Delete a run's artifact folder; stores that cannot delete keep it (with a warning)."""
    try:
        _artifact_repository(run_id).delete_artifacts(path)
    except (MlflowException, NotImplementedError, OSError) as error:
        warnings.warn(f"could not delete artifact {path} of run {run_id}: {error}", stacklevel=2)


def latest_resume_checkpoint(run_id: str) -> str | None:
    """Name of the run's latest complete resume checkpoint, or None if it has none."""
    try:
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{RESUME_POINTER}")["checkpoint"]
    except (MlflowException, OSError, KeyError):
        return None


def download_resume_checkpoint(run_id: str, name: str, destination: Path) -> Path:
    """The run's checkpoint `name` downloaded into `destination` (a fresh directory); returns its path."""
    path = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=f"{RESUME_DIR}/{name}", dst_path=str(destination)
    )
    return Path(path)


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


def logged_epoch_steps(run_id: str, key: str = "train_loss") -> set[int]:
    """Steps (epochs) at which the run already logged `key`: a resumed run never logs an epoch twice."""
    return {m.step for m in mlflow.MlflowClient().get_metric_history(run_id, key)}


def log_sweep_figures(table: pd.DataFrame, metric: str, swept: list[str]) -> None:
    """The parent run's figures: the metric against lr (one line per epoch budget), and parallel coordinates
    of every swept parameter and the metric (one line per trial, coloured by the metric)."""
    done = table[table["state"].isin(["COMPLETE", "PRUNED"])].copy()
    if done.empty:
        return
    x = "lr" if "lr" in swept else next((p for p in swept if pd.api.types.is_numeric_dtype(done[p])), None)
    if x is not None:
        fig, axis = plt.subplots(figsize=(6, 4))
        groups = done.groupby("epochs") if "epochs" in swept and x != "epochs" else [("all", done)]
        for budget, rows in groups:
            rows = rows.groupby(x, as_index=False)[metric].max().sort_values(x)  # best over the other settings
            label = f"epochs={budget}" if budget != "all" else None
            axis.plot(rows[x], rows[metric], marker="o", label=label)
        axis.set(xlabel=x, ylabel=metric, title=f"{metric} by {x}" + (" per epoch budget" if len(swept) > 1 else ""))
        if x == "lr":
            axis.set_xscale("log")
        if axis.get_legend_handles_labels()[1]:
            axis.legend()
        axis.grid(alpha=0.3)
        fig.tight_layout()
        mlflow.log_figure(fig, f"figures/{metric}_by_{x}.png")
        plt.close(fig)

    columns = [*swept, metric]
    fig, axis = plt.subplots(figsize=(1.8 * len(columns) + 2, 4))
    scaled = {}
    for column in columns:
        values = done[column]
        if not pd.api.types.is_numeric_dtype(values):
            codes = {v: i for i, v in enumerate(sorted(values.unique()))}
            values = values.map(codes)
        low, high = float(values.min()), float(values.max())
        scaled[column] = (values - low) / (high - low) if high > low else values * 0 + 0.5
    colours = plt.cm.viridis(scaled[metric].to_numpy(dtype=float))
    for row in range(len(done)):
        axis.plot(range(len(columns)), [scaled[c].iloc[row] for c in columns], color=colours[row], alpha=0.8)
    axis.set_xticks(range(len(columns)), columns)
    axis.set_yticks([])
    for i, column in enumerate(columns):
        raw = done[column]
        axis.annotate(f"{raw.min():.3g}" if pd.api.types.is_numeric_dtype(raw) else str(sorted(raw.unique())[0]),
                      (i, 0), textcoords="offset points", xytext=(3, -12), fontsize=7)  # fmt: skip
        axis.annotate(f"{raw.max():.3g}" if pd.api.types.is_numeric_dtype(raw) else str(sorted(raw.unique())[-1]),
                      (i, 1), textcoords="offset points", xytext=(3, 4), fontsize=7)  # fmt: skip
    axis.set_title(f"trials: parameters and {metric} (colour)")
    fig.tight_layout()
    mlflow.log_figure(fig, "figures/parallel_coordinates.png")
    plt.close(fig)


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
    run = client.create_run(experiment_id, run_name=run_name,
                            tags={"mlflow.parentRunId": parent_run_id, **tags, "error": error[:5000]})  # fmt: skip
    for key, value in params.items():
        client.log_param(run.info.run_id, key, str(value))
    client.set_terminated(run.info.run_id, "FAILED")
    return run.info.run_id


def log_artifacts_to(run_id: str, directory: Path, artifact_path: str) -> None:
    """Add a directory to a run's artifacts (a finished run too: an export of its model)."""
    mlflow.MlflowClient().log_artifacts(run_id, str(directory), artifact_path)
