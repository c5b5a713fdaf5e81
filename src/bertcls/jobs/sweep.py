"""The sweep job: a grid or TPE search as one parent MLflow run with a child run per trial (Optuna underneath)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pandas as pd

from bertcls.config import DEFAULT_EXPERIMENT, TrainConfig
from bertcls.config.fields import flatten
from bertcls.config.jobs import job_params
from bertcls.data import prepare_data
from bertcls.data.tasks import metric_direction
from bertcls.errors import ConfigError
from bertcls.evaluation import figures
from bertcls.jobs.data_config import with_absolute_files
from bertcls.jobs.train import train
from bertcls.model.config import ModelConfig
from bertcls.model.tokenizer import load_tokenizer
from bertcls.runtime import liveness
from bertcls.sweep import parameters, search
from bertcls.tracking import runs
from bertcls.tracking.artifacts import resolve_model

log = logging.getLogger("bertcls")


@dataclasses.dataclass
class SweepOutcome:
    parent_run_id: str | None  # None for a worker that nests under another machine's parent
    study_name: str
    storage: str
    metric: str
    table: object  # pandas DataFrame: one row per trial
    best_run_id: str | None
    best_value: float | None
    trained: int  # trials this process trained


def _sweep_task(base: TrainConfig):
    """The sweep's data, prepared once up front: its task decides the default metric, and a bad dataset
    stops the sweep before any trial."""

    model_dir = resolve_model(base.model)
    vocab_size = ModelConfig.from_json_file(model_dir / "config.json").vocab_size
    return prepare_data(base.data, load_tokenizer(model_dir, vocab_size)).task


def _worker_command(base: TrainConfig, sweep_config, parent_run_id: str, storage: str, study: str) -> list[str]:
    """`bertcls sweep` with this sweep's settings, as a worker nested under `parent_run_id`."""

    values = {
        **flatten(base),
        **dataclasses.asdict(sweep_config),
        "parent_run_id": parent_run_id,
        "storage": storage,
        "study_name": study,
        "workers": 1,
    }
    command = [sys.executable, "-m", "bertcls.cli", "sweep"]
    for param in job_params("sweep"):
        value = values.get(param.name)
        if value is not None and param.name in values:
            command += [param.flag, str(value).lower() if isinstance(value, bool) else str(value)]
    return command


def _trial_table(study, space, metric: str):
    """One row per trial of the study (surplus ones left out): params, state, best_val_<metric>, best epoch,
    epochs run, wall time, run id, error."""

    rows = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        if attrs.get(search.SURPLUS):
            continue
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name,
                **{k: trial.params.get(k) for k in [*space.choices, *space.ranges]},
                f"best_val_{metric}": attrs.get("best_value", trial.value),
                **({} if metric == "loss" else {"best_val_loss": attrs.get("best_val_loss")}),
                "best_epoch": attrs.get("best_epoch"),
                "epochs_run": attrs.get("epochs_run"),
                "pruned": trial.state.name == "PRUNED",
                "wall_time_s": attrs.get("wall_time_s"),
                "run_id": attrs.get("run_id"),
                "error": attrs.get("error"),
            }
        )
    return pd.DataFrame(rows)


SWEEP_POLL_S = 5  # how often a worker with nothing left to train looks at the trials others run


def _beat(run_id: str) -> None:
    """Refresh a run's heartbeat tag; a store that does not answer now is tried again at the next beat."""

    with contextlib.suppress(Exception):
        runs.set_run_tags(run_id, liveness.heartbeat_tag())


def _run_trials(study, space, base: TrainConfig, metric: str, parent_run_id: str, study_name: str) -> int:
    """Ask, train and tell until the study's budget is used up; returns how many trials this process trained."""
    trained, waited_for = 0, None
    experiment_id = runs.get_run(parent_run_id).info.experiment_id
    while True:
        _fail_stale_trials(study, experiment_id, study_name)
        if not search.remaining(study, space):
            busy = search.running_elsewhere(study)
            if not busy:
                return trained
            if waited_for != [t.number for t in busy]:  # say it once per set of trials waited for
                waited_for = [t.number for t in busy]
                held = ", ".join(f"trial {t.number} {t.params} in {search.owner_of(t)}" for t in busy)
                log.warning("waiting for %s before naming the best (a trial whose process dies is retried)", held)
            time.sleep(SWEEP_POLL_S)
            continue
        trial = search.ask(study)
        if search.is_surplus(trial, space):  # another worker took the last point meanwhile
            study._storage.set_trial_user_attr(trial._trial_id, search.SURPLUS, True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue  # the points other workers hold are waited for above
        search.claim(study, trial)
        trained += _train_trial(study, trial, space, base, metric, parent_run_id, study_name)


def _fail_stale_trials(study, experiment_id: str, study_name: str) -> None:
    """A dead worker's trial: FAIL it (a retry copy waits) and end its run FAILED."""
    for number, reason in search.fail_stale(study):
        log.warning("trial %d failed: %s; its grid point is retried", number, reason)
        for run in runs.find_runs([experiment_id], {"sweep_study": study_name, "trial": str(number)}):
            if run.info.status == "RUNNING":
                runs.mark_failed(run.info.run_id, f"sweep trial {number}: {reason}")


def _train_trial(study, trial, space, base: TrainConfig, metric: str, parent_run_id: str, study_name: str) -> int:
    """Train one claimed trial as a child run and tell the study how it went; 1 if it trained, 0 if it failed."""
    tags = {"sweep_study": study_name, "trial": str(trial.number)}
    started = time.perf_counter()
    with search.Heartbeat(study, trial, also=lambda: _beat(parent_run_id)):
        values = {}
        try:
            values = space.suggest(trial)
            pruning = search.PruningCallback(trial, metric)
            config = parameters.trial_config(base, values)
            run_name = f"trial {trial.number}"
            outcome = train(config, None, run_name, callbacks=(pruning,), parent_run_id=parent_run_id, tags=tags)
        except KeyboardInterrupt:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            search.retry_callback()(study, study._storage.get_trial(trial._trial_id))  # the re-run retries it
            raise
        except Exception as err:  # the trial fails, the sweep goes on
            _record_failure(study, trial, parent_run_id, values, tags, str(err) or type(err).__name__)
            return 0
    attrs = {
        "run_id": outcome.run_id,
        "best_epoch": outcome.best_epoch,
        "best_value": outcome.metrics[f"best_val_{metric}"],
        "best_val_loss": outcome.metrics.get("best_val_loss"),
        "wall_time_s": round(time.perf_counter() - started, 1),
        "epochs_run": outcome.epochs_run,
    }
    for key, item in attrs.items():
        trial.set_user_attr(key, item)
    if pruning.pruned_at is not None:
        runs.set_run_tags(outcome.run_id, {"pruned": "true", "epochs_run": str(pruning.pruned_at)})
        trial.set_user_attr("epochs_run", pruning.pruned_at)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, attrs["best_value"])
    return 1


def _record_failure(study, trial, parent_run_id: str, values: dict, tags: dict, message: str) -> None:
    """The error on the trial's run (a FAILED run of its own when it failed before one existed) and its FAIL."""
    found = runs.find_runs([runs.get_run(parent_run_id).info.experiment_id], tags)
    if found:
        runs.set_run_tags(found[0].info.run_id, {"error": message[:5000]})
        run_id = found[0].info.run_id
    else:  # it failed before its run existed (a bad combination): record it as a FAILED run
        run_id = runs.log_failed_run(parent_run_id, f"trial {trial.number}", values, tags, message)
    for key, value in {"run_id": run_id, "error": message[:1000]}.items():
        trial.set_user_attr(key, value)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    log.warning("trial %d failed: %s", trial.number, message)


def _best_trial(complete, column: str, direction: str):
    """The best finished trial by the metric; ties (common for accuracy on a small validation split) go to the
    lower validation loss, then to the earlier trial."""
    top = complete[column].max() if direction == "max" else complete[column].min()
    tied = complete[complete[column] == top]
    if "best_val_loss" in tied.columns and tied["best_val_loss"].notna().any():
        tied = tied.sort_values(["best_val_loss", "trial"])
    return tied.iloc[0]


def sweep(
    base: TrainConfig,
    sweep_config,
    experiment: str | None = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
    system_metrics: bool = False,
) -> SweepOutcome:
    """A grid or TPE search as one parent MLflow run with a child run per trial (Optuna underneath)."""
    base = dataclasses.replace(base, data=with_absolute_files(base.data))
    space = parameters.search_space(sweep_config)  # every refusal before anything runs
    parameters.check_grid(base, space)
    storage_url = sweep_config.storage or search.default_storage(runs.tracking_uri())
    storage = search.open_storage(storage_url)
    task = _sweep_task(base)
    metric = sweep_config.metric or task.primary_metric
    allowed = (*task.metric_names(), "loss")
    if metric not in allowed:
        raise ConfigError(
            f"metric {metric!r} is not a validation metric of {task.name}; choose one of {', '.join(allowed)}."
        )
    name = sweep_config.study_name or parameters.study_name(base, space, metric)
    direction = metric_direction(metric)
    study = search.open_study(storage, name, space, direction, sweep_config.pruner, sweep_config.sampler_seed)
    shown_storage = search.redacted(storage_url)

    if sweep_config.parent_run_id:  # a worker: trials nest under another process's (or machine's) sweep run
        if runs.get_run(sweep_config.parent_run_id) is None:
            raise ConfigError(f"parent_run_id {sweep_config.parent_run_id}: no such run in {runs.tracking_uri()}.")
        trained = _run_trials(study, space, base, metric, sweep_config.parent_run_id, name)
        return SweepOutcome(None, name, shown_storage, metric, _trial_table(study, space, metric), None, None, trained)

    with runs.tracked_run(experiment, run_name or f"sweep {name}", system_metrics=system_metrics) as parent:
        parent_id = parent.info.run_id
        runs.set_job_tag("sweep")
        runs.set_tags(liveness.process_tags())  # host, pid: `bertcls runs --stale` finds a killed sweep
        runs.set_tags({"sweep_study": name, "sweep_storage": shown_storage, "metric": metric})
        definition = {
            "base": base.flat_params(),
            "space": space.describe(),
            "metric": metric,
            "study": name,
            "budget": space.budget,
            "sampler": "grid" if space.is_grid else "tpe",
            "pruner": sweep_config.pruner,
        }
        runs.log_params({"sweep_" + k: v for k, v in dataclasses.asdict(sweep_config).items() if v is not None})
        runs.log_dict(definition, "sweep.json")
        command = _worker_command(base, sweep_config, parent_id, storage_url, name)
        trained = _with_workers(
            sweep_config.workers - 1, command, lambda: _run_trials(study, space, base, metric, parent_id, name)
        )
        table = _trial_table(study, space, metric)
        best_run_id, best_value = _log_summary(table, f"best_val_{metric}", direction, [*space.choices, *space.ranges])
    return SweepOutcome(parent_id, name, shown_storage, metric, table, best_run_id, best_value, trained)


def _with_workers(count: int, command: list[str], run_trials) -> int:
    """Start `count` worker processes on the same study, run trials here too, then log the workers' output."""
    workers = []
    with tempfile.TemporaryDirectory(prefix="bertcls-workers-") as logs:
        for index in range(1, count + 1):
            log_path = Path(logs) / f"worker-{index}.log"
            with open(log_path, "w") as out:
                workers.append((subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT), log_path))
        trained = run_trials()
        for process, _ in workers:
            process.wait()
        for _, log_path in workers:
            runs.log_artifact(log_path, "workers")
    return trained


def _log_summary(table, column: str, direction: str, swept: list[str]) -> tuple[str | None, float | None]:
    """The trial table, the sweep's figures and counts, and the best trial (tagged); returns its run and value."""
    runs.log_table(table, "trials.json")
    runs.log_outputs(figures.sweep_figures(table, column, swept))
    complete = table[table["state"] == "COMPLETE"]
    best_run_id, best_value = None, None
    if not complete.empty:
        best = _best_trial(complete, column, direction)
        best_run_id, best_value = best["run_id"], float(best[column])
        runs.set_run_tags(best_run_id, {"best_trial": "true"})
        runs.set_tags({"best_run_id": best_run_id})
        runs.log_metrics({column: best_value})  # best_val_<metric>, as the children name it
    runs.log_metrics(
        {
            "trials_complete": float(len(complete)),
            "trials_pruned": float((table["state"] == "PRUNED").sum()),
            "trials_failed": float((table["state"] == "FAIL").sum()),
        }
    )
    return best_run_id, best_value


def describe_sweep(outcome: SweepOutcome) -> str:
    """The lines printed at the end of `sweep`: the trial table and the best run."""
    shown = [c for c in outcome.table.columns if c not in ("error",)] if len(outcome.table) else []
    lines = [
        f"study {outcome.study_name} ({outcome.storage}): {len(outcome.table)} trials, "
        f"{outcome.trained} trained by this process"
    ]
    if shown:
        lines.append(outcome.table[shown].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if outcome.parent_run_id:
        lines.append(f"sweep run {outcome.parent_run_id}")
    if outcome.best_run_id:
        lines.append(
            f"best: run {outcome.best_run_id}, best_val_{outcome.metric} = {outcome.best_value:.4f}   "
            f"(promote: mlflow run . -e register -P run_id={outcome.best_run_id})"
        )
    return "\n".join(lines)
