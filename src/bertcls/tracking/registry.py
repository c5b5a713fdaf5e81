"""Pick the best run, register its model, and move @champion only when the candidate wins.

Registry aliases only (stages are deprecated). Every alias move is recorded as a tag on the registered
model, so the history survives later moves.
"""

from __future__ import annotations

import dataclasses
import getpass
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from bertcls.config import DataConfig, TrainConfig
from bertcls.data.tasks import metric_direction
from bertcls.errors import RegistryError, setting

# Runs of these jobs never compete for registration: they log no model of their own.
NON_CANDIDATE_JOBS = ("register", "evaluate", "sweep")
# DataConfig fields that define "the same dataset and split": runs agreeing on all of them have comparable figures.
SPLIT_FIELDS = (
    "dataset",
    "dataset_config",
    "train_file",
    "validation_file",
    "test_file",
    "split_seed",
    "max_eval_samples",
    "max_seq_length",
)


log = logging.getLogger("bertcls")


def client() -> MlflowClient:
    """A client of the current tracking store (MLFLOW_TRACKING_URI, else ./mlflow.db)."""
    return MlflowClient()


def get_run(client: MlflowClient, run_id: str):
    return client.get_run(run_id)


@dataclasses.dataclass
class Candidate:
    run_id: str
    metric_key: str  # the run metric actually compared (best_val_* for per-epoch val_* metrics)
    value: float
    config: TrainConfig  # as the run logged it (its config artifact), not re-parsed from string params
    dataset: str  # the data's name as the run tagged it (a file's name when files were read)
    task: str = ""  # the run's `task` tag (classification, ner, ...): what input its model takes


def _experiment_id(client: MlflowClient, experiment: str) -> str:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = [e.name for e in client.search_experiments()]
        raise RegistryError(
            f"No experiment named {experiment!r} in {mlflow.get_tracking_uri()}. Experiments there: "
            f"{', '.join(names) or 'none'}. Pass {setting('experiment', '<name>')}, or set MLFLOW_TRACKING_URI "
            "to the store that has it (`mlflow run` without --experiment-name logs to 'Default')."
        )
    return found.experiment_id


def baseline_value(client: MlflowClient, candidate: Candidate) -> float | None:
    """The candidate run's majority-class figure for its metric (best_val_mcc -> baseline_val_mcc), if logged."""
    key = "baseline_" + candidate.metric_key.removeprefix("best_")
    return client.get_run(candidate.run_id).data.metrics.get(key)


def check_model_name(name: str) -> None:
    """MLflow's own rule for registered model names, checked before anything is registered."""
    from mlflow.utils.validation import _validate_model_name

    try:
        _validate_model_name(name)
    except MlflowException as err:
        raise RegistryError(
            f"{err.message} Pass another {setting('name', 'bertcls-team-spam')} (letters, digits, '-', '_' and '.' "
            "are safe)."
        ) from None


def metric_key_for(metric: str) -> str:
    """Per-epoch validation metrics compare at the logged (best) epoch: val_mcc -> best_val_mcc."""
    return f"best_{metric}" if metric.startswith("val_") else metric


def primary_metric_of(runs, where: str) -> str:
    """The `val_<primary metric>` the runs share (their `primary_metric` param; runs logged before it had one
    are classifiers: val_accuracy). Runs of different tasks have none in common: a RegistryError asks for one."""
    by_dataset: dict[str, set[str]] = {}
    for r in runs:
        by_dataset.setdefault(r.data.tags.get("dataset", "?"), set()).add(
            r.data.params.get("primary_metric", "accuracy")
        )
    primaries = sorted(set().union(*by_dataset.values()))
    if len(primaries) > 1:
        ranks = "; ".join(f"{d}: val_{', val_'.join(sorted(m))}" for d, m in sorted(by_dataset.items()))
        raise RegistryError(
            f"The training runs {where} are of different tasks, ranked by different primary metrics ({ranks}). "
            f"Pass {setting('dataset', '<one of them>')} to register one dataset's runs by its own primary metric "
            f"(or {setting('metric', '<name>')} to rank them all by one metric)."
        )
    return f"val_{primaries[0]}"


def best_run(
    client: MlflowClient,
    experiment: str,
    metric: str | None,
    dataset: str | None = None,
    finished_after: int | None = None,
    missing_ok: bool = False,
    direction: str | None = None,
) -> Candidate | None:
    """The FINISHED training run with the best `metric` (None: the runs' primary metric; optionally: on `dataset`,
    finished after a time); `direction` (max/min) for a metric whose direction bertcls does not know."""
    experiment_id = _experiment_id(client, experiment)
    query = "attributes.status = 'FINISHED'"
    if dataset:
        query += f" and tags.dataset = '{dataset}'"
    runs = [r for r in client.search_runs([experiment_id], query, max_results=5000) if is_candidate(r)]
    if finished_after is not None:
        runs = [r for r in runs if (r.info.end_time or 0) > finished_after]
        if not runs and missing_ok:
            return None
    if not runs:
        raise RegistryError(
            f"Experiment {experiment!r} has no FINISHED training runs"
            f"{' on dataset ' + repr(dataset) if dataset else ''}. Train one first: mlflow run . -e train."
        )
    if metric is None:
        metric = primary_metric_of(runs, f"in {experiment!r}" + (f" on dataset {dataset!r}" if dataset else ""))
    key = metric_key_for(metric)
    scored = [r for r in runs if key in r.data.metrics]
    if not scored:
        logged = sorted({k for r in runs for k in r.data.metrics if k.startswith(("best_val_", "test_"))})
        raise RegistryError(
            f"No finished run in {experiment!r} logged the metric {metric!r} (looked for {key!r}). Metrics "
            f"they logged: {', '.join(logged) or 'none'}. Pass one of them as {setting('metric', '<name>')}."
        )
    datasets = sorted({r.data.tags.get("dataset", "") for r in scored})
    if dataset is None and len(datasets) > 1:  # figures on different data do not rank: ask which dataset
        raise RegistryError(
            f"Experiment {experiment!r} has training runs on several datasets ({', '.join(datasets)}), whose "
            f"{key} values are not comparable. Register one dataset at a time: pass "
            f"{setting('dataset', datasets[0])} (or {setting('run_id', '<id>')} for one run)."
        )
    if key.endswith("_accuracy") and any(r.data.tags.get("task") == "ner" for r in scored):
        log.warning(
            "ranking word taggers by %s, the share of words tagged right (mostly O); their primary metric is entity "
            "F1: pass %s to rank them as training picked their best epoch",
            key,
            setting("metric", "val_f1"),
        )
    sign = 1 if metric_direction(key, direction) == "max" else -1
    winner = max(scored, key=lambda r: (sign * r.data.metrics[key], -r.info.start_time))
    return _candidate(winner, key)


def run_train_config(run_or_id) -> TrainConfig:
    """A training run's resolved TrainConfig: its JSON artifact, or (runs logged before it) its params."""
    from bertcls.config.saved import TRAIN_CONFIG_ARTIFACT, train_config_from_dict, train_config_from_params

    run = MlflowClient().get_run(run_or_id) if isinstance(run_or_id, str) else run_or_id
    try:
        saved = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/{TRAIN_CONFIG_ARTIFACT}")
    except (MlflowException, OSError):
        return train_config_from_params(run.data.params)
    return train_config_from_dict(saved)


def _candidate(run, key: str) -> Candidate:
    config = run_train_config(run)
    dataset = run.data.tags.get("dataset") or config.data.dataset
    return Candidate(run.info.run_id, key, run.data.metrics[key], config, dataset, run.data.tags.get("task", ""))


def is_candidate(run) -> bool:
    """A training run that logged a model (not a register / evaluate / sweep-parent run)."""
    tags = run.data.tags
    return tags.get("bertcls_job", "train") not in NON_CANDIDATE_JOBS and "model_uri" in tags


def candidate_from_run(client: MlflowClient, run_id: str, metric: str | None) -> Candidate:
    """A named run as the candidate (instead of the experiment's best); metric None: its primary metric."""
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise RegistryError(f"No run with id {run_id!r} in {mlflow.get_tracking_uri()}.") from None
    key = metric_key_for(metric or primary_metric_of([run], f"of run {run_id}"))
    if not is_candidate(run):
        raise RegistryError(
            f"Run {run_id} is a {run.data.tags.get('bertcls_job', 'non-bertcls')} run without a logged bertcls "
            "model; only training runs can be registered. Pass the run id of a train run."
        )
    if run.info.status != "FINISHED" or key not in run.data.metrics:
        raise RegistryError(
            f"Run {run_id} is {run.info.status} and logged {key!r}: "
            f"{key in run.data.metrics}. Only FINISHED runs with the metric can be registered."
        )
    return _candidate(run, key)


def register_run(client: MlflowClient, name: str, candidate: Candidate):
    """The registry version for the candidate's model; registering the same run again reuses it."""
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="bertcls text classifier; @champion is the one to load.")
    existing = client.search_model_versions(f"name = '{name}' and run_id = '{candidate.run_id}'")
    if existing:
        return existing[0], False
    # The run's logged model (an MLflow 3 logged-model URI models:/m-..., tagged by train).
    source = client.get_run(candidate.run_id).data.tags["model_uri"]
    tags = {
        "source_run_id": candidate.run_id,
        "metric": candidate.metric_key,
        "metric_value": str(candidate.value),
        "dataset": candidate.dataset,
    }
    model_id = source.removeprefix("models:/") if source.startswith("models:/m-") else None
    version = client.create_model_version(name, source, run_id=candidate.run_id, tags=tags, model_id=model_id)
    return client.get_model_version(name, version.version), True


def tag_job_run(client: MlflowClient, job: str) -> None:
    """Under `mlflow run`, tag the run it made for this job so the run never competes as a candidate."""
    import os

    run_id = os.environ.get("MLFLOW_RUN_ID")
    if run_id:
        client.set_tag(run_id, "bertcls_job", job)


def current_alias(client: MlflowClient, name: str, alias: str):
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def comparable(a: DataConfig, b: DataConfig) -> bool:
    """Same dataset and split recipe, so their metric values describe the same examples."""
    return all(getattr(a, name) == getattr(b, name) for name in SPLIT_FIELDS)


def record_alias_move(client: MlflowClient, name: str, event: dict) -> None:
    """Append an alias move to the model's tags: alias_history.<n> = JSON (never overwritten)."""
    tags = client.get_registered_model(name).tags
    index = sum(1 for k in tags if k.startswith("alias_history."))
    client.set_registered_model_tag(name, f"alias_history.{index:04d}", json.dumps(event, sort_keys=True))


def move_alias(client: MlflowClient, name: str, alias: str, version, previous, reason: str, values: dict) -> bool:
    """Point `alias` at `version` and record the move; False (nothing recorded) if it already points there."""
    if previous is not None and previous.version == version.version:
        return False
    client.set_registered_model_alias(name, alias, version.version)
    record_alias_move(
        client,
        name,
        {
            "alias": alias,
            "to_version": version.version,
            "from_version": previous.version if previous else None,
            "reason": reason,
            "by": getpass.getuser(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **values,
        },
    )
    return True


DOWNLOAD_RECORD = ".bertcls-download.json"


def _downloaded_once(source: str, identity: str) -> Path:
    """The model's artifacts under `$BERTCLS_CACHE/models/<key>`, downloaded on first use and reused after.

    A logged model never changes, so one copy serves every later evaluate / predict / export / distill of it
    (MLflow's own download would leave a fresh ~90 MB temporary folder behind on every call). `identity` holds
    the run id, so a store deleted and rebuilt at the same path cannot hand back another store's model. The
    copy lands in a hidden staging folder and is renamed into place whole: a killed download leaves nothing
    that looks complete, and two processes downloading at once both end with one good copy.
    """
    from bertcls.paths import cache_root

    parent = cache_root("models")
    final = parent / hashlib.sha256(identity.encode()).hexdigest()[:20]
    record = final / DOWNLOAD_RECORD
    if record.is_file():
        return final / json.loads(record.read_text())["path"]
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=parent))
    try:
        fetched = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(staging)))
        relative = fetched.relative_to(staging).as_posix()
        (staging / DOWNLOAD_RECORD).write_text(json.dumps({"source": source, "identity": identity, "path": relative}))
        if final.exists() and not record.is_file():  # only a rename puts it there, record inside: not ours
            shutil.rmtree(final)
        try:
            os.replace(staging, final)
        except OSError:  # another process put its complete copy there first: use that one
            if not record.is_file():
                raise
        return final / relative
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@dataclasses.dataclass
class ModelRef:
    """A model URI resolved to local files and its lineage."""

    uri: str
    local_dir: object  # pathlib.Path of our saved model (weights, config, tokenizer)
    source_run_id: str | None
    name: str | None = None
    version: str | None = None


def resolve_model_uri(uri: str) -> ModelRef:
    """runs:/<id>/model, models:/<name>@<alias>, models:/<name>/<version> or a logged model's models:/m-<id> ->
    local files + lineage."""
    usage = (
        "Use runs:/<run_id>/model, models:/<name>@<alias> (e.g. models:/bertcls-sms_spam@champion), "
        "models:/<name>/<version> or a logged model's models:/m-<id>."
    )
    client = MlflowClient()
    name = version = run_id = None
    source = identity = uri  # run ids and logged-model ids are random UUIDs: the URI names one model for good
    try:
        if uri.startswith("runs:/"):
            parts = uri[len("runs:/") :].split("/", 1)
            if len(parts) != 2 or not parts[0] or not parts[1]:
                raise RegistryError(f"Malformed model URI {uri!r}. {usage}")
            run_id = parts[0]
            client.get_run(run_id)
        elif uri.startswith("models:/"):
            rest = uri[len("models:/") :]
            found = None
            if re.fullmatch(r"m-[0-9a-f]+", rest):  # an MLflow 3 logged model (what `train` prints)
                run_id = client.get_logged_model(rest).source_run_id
            elif "@" in rest:
                name, alias = rest.split("@", 1)
                found = client.get_model_version_by_alias(name, alias)
            elif rest.count("/") == 1 and rest.split("/")[1].isdigit():
                name, number = rest.split("/")
                found = client.get_model_version(name, number)
            else:
                raise RegistryError(f"Malformed model URI {uri!r}. {usage}")
            if found is not None:
                version, run_id = found.version, found.run_id
                # the version itself, not the alias (it may move while we download); keyed by ids no other store has
                source, identity = f"models:/{found.name}/{found.version}", f"{found.run_id}|{found.source}"
        else:
            raise RegistryError(f"Malformed model URI {uri!r}. {usage}")
        local = _downloaded_once(source, identity)
    except MlflowException as err:
        raise RegistryError(
            f"Model {uri!r} not found in {mlflow.get_tracking_uri()} ({str(err).splitlines()[0][:200]}). "
            f"Check the run id, name, alias or version. {usage}"
        ) from None
    saved = sorted(local.glob("artifacts/*/bertcls_config.json"))
    if not saved:
        raise RegistryError(f"{uri!r} is not a bertcls model (no saved bertcls weights among its artifacts).")
    return ModelRef(uri, saved[0].parent, run_id, name, version)
