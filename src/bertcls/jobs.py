"""Composition root: each job wires config -> data -> model -> train -> tracking. Nothing imports it."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from bertcls.background_logging import BackgroundLogger, wait_at_end_s
from bertcls.config import DEFAULT_EXPERIMENT, PRECISION_DTYPES, DataConfig, ModelConfig, TrainConfig
from bertcls.errors import ConfigError, TrackingUnreachable

log = logging.getLogger("bertcls")


@dataclasses.dataclass
class TrainOutcome:
    run_id: str
    model_uri: str
    best_epoch: int
    metrics: dict[str, float]
    wall_time_s: float
    epochs_run: int = 0  # fewer than epochs after early stopping or pruning


def _check_model_against_data(model_config: ModelConfig, config: TrainConfig) -> None:
    if config.data.max_seq_length > model_config.max_position_embeddings:
        raise ConfigError(
            f"max_seq_length {config.data.max_seq_length} exceeds the model's position limit "
            f"({model_config.max_position_embeddings} positions in {config.model}). Use max_seq_length <= "
            f"{model_config.max_position_embeddings}."
        )
    if config.freeze_layers > model_config.num_layers:
        raise ConfigError(
            f"freeze_layers {config.freeze_layers} exceeds the depth of {config.model} ({model_config.num_layers} "
            f"layers). Use freeze_layers <= {model_config.num_layers} ({model_config.num_layers} freezes the whole "
            "encoder, as finetune=head does)."
        )


def _reading_settings(data, config: TrainConfig):
    """How the trained model reads text: saved with it, so predictions read texts as training did."""
    from bertcls.settings import ReadingSettings

    return ReadingSettings(
        task=data.task.name,
        label_names=tuple(data.task.label_names),
        primary_metric=data.task.primary_metric,
        max_seq_length=config.data.max_seq_length,
        buckets=tuple(data.buckets),
        has_text_pair=data.task.has_text_pair,
        long_text=config.data.long_text,
        window_overlap=config.data.window_overlap,
        max_windows=config.data.max_windows,
    )


class _Checkpoints:
    """log_checkpoints=all: each epoch's model as a logged model; beyond keep_checkpoints, the oldest that is not
    the best so far is deleted (MLflow marks the logged model deleted)."""

    def __init__(self, config: TrainConfig, primary: str, log_model):
        self.keep = config.keep_checkpoints
        self.primary = primary
        self.log_model = log_model
        self.kept: list[tuple[int, str]] = []  # (epoch, model id), oldest first
        self.best: tuple[float, str] | None = None

    def state(self) -> dict:
        """What a resume checkpoint keeps of it."""
        return {"kept": self.kept, "best": self.best}

    def restore(self, run_id: str) -> None:
        """What a resumed run logged before: read from the store, the one record that cannot lag behind (models
        are logged in the background, after the resume checkpoint of their epoch is written)."""
        from bertcls import tracking
        from bertcls.data.tasks import metric_direction

        logged = tracking.logged_checkpoints(run_id, f"val_{self.primary}")  # [(epoch, model id, value)]
        self.kept = [(epoch, model_id) for epoch, model_id, _ in logged]
        scored = [(value, model_id) for _, model_id, value in logged if value is not None]
        pick = max if metric_direction(self.primary) == "max" else min
        self.best = pick(scored, key=lambda item: item[0]) if scored else None

    def log(self, epoch: int, metrics: dict[str, float], state) -> str:
        """Log `state` (the model at the end of `epoch`) as checkpoint-epoch-<epoch>; returns its model id."""
        import mlflow

        from bertcls.data.tasks import metric_direction

        validation = {f"best_{k}": v for k, v in metrics.items() if k.startswith("val_")}  # the card's figures
        model_id = self.log_model(state, f"checkpoint-epoch-{epoch}", epoch, validation).model_id
        value = metrics[f"val_{self.primary}"]
        maximise = metric_direction(self.primary) == "max"
        if self.best is None or (value > self.best[0] if maximise else value < self.best[0]):
            self.best = (value, model_id)
        self.kept.append((epoch, model_id))
        others = [(e, m) for e, m in self.kept if m != self.best[1]]
        while self.keep and len(others) > self.keep:
            _, oldest = others.pop(0)
            mlflow.MlflowClient().delete_logged_model(oldest)
            self.kept = [(e, m) for e, m in self.kept if m != oldest]
        return model_id


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
) -> TrainOutcome | None:
    """Fine-tune, evaluate each epoch, log everything and the best epoch's model to MLflow.

    resume_run_id: continue that KILLED or FAILED run from its latest checkpoint, with its own parameters.
    callbacks: more fit() callbacks (`bertcls.train.loop.Callback`), after the progress bar and MLflow's.
    cluster: coordinator / num_processes / process_id of a multi-process run (`bertcls.distributed`); in one,
    process 0 logs the run and returns its outcome, the others compute alongside and return None.
    parent_run_id, tags: a child run of that run (a sweep's trial) with these tags from its start.
    """
    import jax

    from bertcls import distributed

    distributed.initialize(**(cluster or {}))  # before anything touches a device

    from bertcls import tracking
    from bertcls.data import prepare_data
    from bertcls.data.batching import check_batch_size
    from bertcls.data.pipeline import class_warnings
    from bertcls.hub import resolve_model
    from bertcls.metrics import baseline_metrics
    from bertcls.model.weights import load_hf_checkpoint, save_model
    from bertcls.model_card import CardFacts, base_licence
    from bertcls.model_card import render as render_card
    from bertcls.paths import cache_root
    from bertcls.resumption import RESUME_TAG, ResumeCheckpoints, local_checkpoint, resume_command, resume_source
    from bertcls.settings import train_config_to_dict
    from bertcls.tokenizer import load_tokenizer
    from bertcls.train import resume
    from bertcls.train.loop import fit, predict_split, steps_per_epoch
    from bertcls.train.optim import make_optimizer
    from bertcls.train.progress import ProgressBar
    from bertcls.train.steps import Steps, enable_compilation_cache, make_data_mesh
    from bertcls.train.strategy import lr_scale_fn, trainable_filter

    started = time.perf_counter()
    config = dataclasses.replace(config, data=_with_absolute_files(config.data))  # later jobs read them anywhere
    if resume_run_id and jax.process_count() > 1:
        raise ConfigError(
            "resume_run_id is not supported for multi-process runs yet (they write no resume checkpoint). Resume "
            "on one host, or start a new run."
        )
    source = resume_source(resume_run_id, config) if resume_run_id else None
    if source is not None:
        config = source.config
    # Everything that can be wrong with the input is checked before a run exists.
    check_batch_size(config.batch_size, jax.device_count())
    check_batch_size(config.eval_batch_size, jax.device_count())
    model_dir = resolve_model(config.model)
    arch = ModelConfig.from_json_file(
        model_dir / "config.json", head=config.head, compute_dtype=PRECISION_DTYPES[config.precision],
        head_batchnorm=config.head_batchnorm,
    )  # fmt: skip
    _check_model_against_data(arch, config)
    tokenizer = load_tokenizer(model_dir, arch.vocab_size)
    data = prepare_data(config.data, tokenizer)
    data_warnings = class_warnings(data)
    for warning in data_warnings:
        log.warning("%s", warning)
    model_config = dataclasses.replace(arch, num_labels=data.task.num_labels)
    model, report = load_hf_checkpoint(model_dir, model_config, seed=config.seed)
    enable_compilation_cache(cache_root("xla"))
    mesh = make_data_mesh()
    total_steps = steps_per_epoch(len(data.splits["train"]), config.effective_batch_size) * config.epochs
    tx = make_optimizer(config.optim, total_steps, lr_scale_fn(config.optim.llrd, arch.num_layers))
    trainable = trainable_filter(config.finetune, config.freeze_layers, arch.num_layers)
    steps = Steps(model, tx, mesh, data.task.is_regression, config.seed, trainable)
    if not distributed.is_primary():  # the same computations, collectives included; MLflow is process 0's
        result = fit(steps, data, config, list(callbacks))
        steps.load_model_state(result.best_model_state)
        if "test" in data.splits:
            predict_split(steps, data.splits["test"], data.task, config.eval_batch_size, data.buckets)
        return None
    fingerprint = resume.fingerprint(steps, data, config.model, config.data.dataset or "files")
    start, restored_extras = None, None
    if source is not None:  # the last refusals (another model shape, other data) before the run is touched
        checkpoint_dir = local_checkpoint(source)
        resume.check_compatible(resume.read_record(checkpoint_dir), fingerprint, f"run {source.run_id}")
        start, restored_extras = resume.restore(checkpoint_dir, steps)

    with tracking.tracked_run(experiment, run_name, system_metrics=system_metrics, resume_run_id=resume_run_id,
                              parent_run_id=parent_run_id) as run:  # fmt: skip
        run_id = run.info.run_id
        warned = {"data_warnings": "; ".join(data_warnings)[:5000]} if data_warnings else {}
        tracking.set_tags({**(tags or {}), **warned})
        tags = tracking.get_run(run_id).data.tags  # `mlflow run` marks its runs PROJECT (and conda/uv: the env)
        env_manager = tags.get("mlflow.project.env", "local") if tags.get("mlflow.source.type") == "PROJECT" else None
        command = resume_command(run_id, run.info.experiment_id, env_manager)
        tracking.set_tags({RESUME_TAG: command})  # the command that continues this run if it stops
        tracking.log_params(
            {
                **config.flat_params(),
                "model_dir": str(model_dir),
                "params_initialized": " ".join(report.initialized) or "none",
                **steps.parameter_counts(),
                "effective_batch_size": config.effective_batch_size,
            }
        )
        tracking.log_train_config(train_config_to_dict(config))
        tracking.set_job_tag("train")
        tracking.set_environment_tags()
        datasets = tracking.log_dataset_inputs(data)
        examples = data.texts["validation"].select(range(min(3, len(data.texts["validation"]))))
        example_texts = list(examples["text"])
        example_pairs = list(examples["text_pair"]) if data.task.has_text_pair else None

        def log_model(state, name: str, step: int, metrics: dict[str, float]):
            """Write the model of `state` with its tokenizer, reading settings and model card; log it as a pyfunc
            model."""
            with tracking.staging_dir() as staging:
                path = staging / "model"
                save_model(steps.model(state), path, list(data.task.label_names),
                           extra={"reading_settings": _reading_settings(data, config).to_dict()})  # fmt: skip
                tokenizer.save_pretrained(str(path))
                facts = CardFacts(config.model, base_licence(str(model_dir)), data.task.name,
                                  tuple(data.task.label_names), {k: str(v) for k, v in config.flat_params().items()},
                                  metrics, run_id, step or None)  # fmt: skip
                (path / "model_card.md").write_text(render_card(facts, hugging_face=False), encoding="utf-8")
                return tracking.log_model(path, example_texts, example_pairs, name=name, step=step)

        checkpoints = _Checkpoints(config, data.task.primary_metric, log_model)
        if source is not None and config.log_checkpoints == "all":
            checkpoints.restore(run_id)
        progress = [ProgressBar()]  # process 0's: one bar per job, not per host
        background = BackgroundLogger(tracking.tracking_uri())  # training never waits on the tracking server
        mlflow_callback = tracking.MlflowCallback(
            run_id,
            background,
            checkpoints.log if config.log_checkpoints == "all" else None,
            steps.host_model_state,
            datasets.get("validation"),
            already_logged=tracking.logged_epoch_steps(run_id) if source else frozenset(),
        )
        for epoch, metrics in enumerate(start.history if start else [], 1):  # epochs an outage kept from the store
            mlflow_callback.log_epoch(epoch, metrics)
        writer = ResumeCheckpoints(run_id, steps, fingerprint, lambda: {"logged_checkpoints": checkpoints.state()},
                                   background, current=source.checkpoint if source else None)  # fmt: skip
        save_progress = writer.save if jax.process_count() == 1 else None  # multi-process: not yet (docs/scaling.md)
        try:
            result = fit(steps, data, config, [*progress, mlflow_callback, *callbacks], start=start,
                         save_progress=save_progress)  # fmt: skip
        except KeyboardInterrupt as interrupt:
            background.flush(wait_at_end_s())  # the checkpoint's upload, if the server answers
            interrupt.resume_command = command if writer.current else None  # the CLI prints it
            raise
        if not background.flush(wait_at_end_s()):
            raise TrackingUnreachable(_outage_paragraph(background, writer, run_id, command, len(result.history)))
        _raise_refused(background)

        steps.load_model_state(result.best_model_state)
        primary = data.task.primary_metric
        best = {f"best_val_{k}": v for k, v in result.best_validation.metrics.items()}
        best["best_val_loss"] = result.best_validation.loss  # register -P metric=val_loss ranks by it
        test = {}
        if "test" in data.splits:
            evaluated = predict_split(steps, data.splits["test"], data.task, config.eval_batch_size, data.buckets)
            test = {f"test_{k}": v for k, v in evaluated.metrics.items()}
            test["test_loss"] = evaluated.loss
        train_labels = data.splits["train"].text_labels()
        baseline = {  # what always answering the majority class scores: register's bar for @champion
            f"baseline_{prefix}_{k}": v
            for prefix, split in (("val", "validation"), ("test", "test")) if split in data.splits
            for k, v in baseline_metrics(data.task, train_labels, data.splits[split].text_labels()).items()
        }  # fmt: skip
        tracking.log_metrics(baseline)
        tracking.log_learning_curves(result.history, primary)
        if not data.task.is_regression:
            tracking.log_confusion_matrix(
                result.best_validation.labels,
                result.best_validation.outputs.argmax(-1),
                data.task.label_names,
                "val",
                title=f"validation confusion matrix (best epoch {result.best_epoch})",
            )

        linked = config.log_checkpoints != "none"  # the final model is the best epoch's checkpoint
        info = log_model(result.best_model_state, "model", result.best_epoch if linked else 0, {**best, **test})
        model_uri = info.model_uri
        final = {"best_epoch": float(result.best_epoch), **best, **test}
        tracking.log_metrics({"best_epoch": float(result.best_epoch)})
        model_id = info.model_id if linked else None
        tracking.log_linked_metrics(best, result.best_epoch, model_id, datasets.get("validation"))
        if test:
            tracking.log_linked_metrics(test, result.best_epoch, model_id, datasets.get("test"))
        tracking.set_tags({"model_uri": model_uri})
        tracking.delete_tag(RESUME_TAG)
        writer.discard(run_id)
    wall = time.perf_counter() - started
    log.info("run %s finished in %.1f s; best epoch %d", run_id, wall, result.best_epoch)
    return TrainOutcome(run_id, model_uri, result.best_epoch, final, wall, len(result.history))


def _outage_paragraph(background, writer, run_id: str, command: str, epochs: int) -> str:
    """What an unfinished run left where, and the one command that completes it."""
    import time as clock

    since = clock.strftime("%H:%M:%S", clock.localtime(background.unreachable_since or clock.time()))
    return (
        f"The tracking server {background.where} has been unreachable since {since} ({background.last_problem}), "
        f"so run {run_id} could not be completed there; training went on and nothing computed is lost. On this "
        f"machine: the resume checkpoint {writer.root / (writer.current or '')} holds the model, the optimizer "
        f"state and the metrics of all {epochs} epoch(s) ({background.pending} tracking calls were still waiting). "
        f"When the server answers again, run: {command} -- it logs what the run lacks and finishes it (no epoch "
        "is trained twice)."
    )


def _raise_refused(background) -> None:
    """A call the tracking store refused during training (not an outage) fails the job after training."""
    if background.failed:
        what, error = background.failed[0]
        raise error


def describe(outcome: TrainOutcome) -> str:
    """The lines printed at the end of `train`."""
    shown = {k: v for k, v in outcome.metrics.items() if k.startswith(("test_", "best_val_"))}
    lines = [f"run {outcome.run_id}: best epoch {outcome.best_epoch}, wall time {outcome.wall_time_s:.1f} s"]
    lines += [f"  {k} = {v:.4f}" for k, v in sorted(shown.items()) if np.isfinite(v)]
    lines.append(f"model: {outcome.model_uri}   (also runs:/{outcome.run_id}/model)")
    return "\n".join(lines)


@dataclasses.dataclass
class EvalOutcome:
    run_id: str
    split: str
    metrics: dict[str, float]


def _with_absolute_files(data: DataConfig) -> DataConfig:
    """Data files by absolute path, resolved from where the user stands (as MLproject `path` params are)."""
    files = {name: getattr(data, name) for name in ("train_file", "validation_file", "test_file")}
    return dataclasses.replace(data, **{k: str(Path(v).resolve()) for k, v in files.items() if v})


# Fields that name a dataset's files and columns: evaluating on another dataset inherits none of them.
_DATASET_FIELDS = (
    "dataset", "dataset_config", "train_file", "validation_file", "test_file", "text_column", "text_pair_column",
    "label_column",
)  # fmt: skip


def _data_config_for(source: DataConfig | None, overrides: dict) -> DataConfig:
    """The source run's data recipe (same split, same seed), with whatever the user set explicitly."""
    base = source or DataConfig()
    if overrides.get("dataset") or overrides.get("train_file"):  # another dataset: inherit no columns or files
        base = dataclasses.replace(base, **{name: getattr(DataConfig(), name) for name in _DATASET_FIELDS})
    return _with_absolute_files(dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None}))


def evaluate(
    model_uri: str,
    split: str = "test",
    data_overrides: dict | None = None,
    batch_size: int = 64,
    top_mistakes: int = 20,
    experiment: str | None = DEFAULT_EXPERIMENT,
    extra_metrics: tuple[str, ...] = (),
    fresh_run: bool = False,
) -> EvalOutcome:
    """Evaluate a logged or registered model on a dataset split; log metrics, tables and figures to a new run."""

    from bertcls import tracking
    from bertcls.data import prepare_data
    from bertcls.errors import DataError
    from bertcls.metrics import compute_metrics, extra_metric, mean_loss, most_confident_mistakes, per_class_table
    from bertcls.predict import Predictor, softmax
    from bertcls.registry import resolve_model_uri, run_train_config

    ref = resolve_model_uri(model_uri)
    source = run_train_config(ref.source_run_id) if ref.source_run_id else None
    data_config = _data_config_for(source.data if source else None, data_overrides or {})
    predictor = Predictor.from_dir(ref.local_dir, batch_size=batch_size)
    # Texts are read as the model was trained: its own saved settings decide, not the run's params.
    data_config = dataclasses.replace(data_config, **predictor.settings.data_fields())
    data = prepare_data(data_config, predictor.tokenizer)
    if not data.task.is_regression and list(data.task.label_names) != predictor.label_names:
        raise DataError(
            f"The model's labels ({', '.join(predictor.label_names)}) do not match the dataset's "
            f"({', '.join(data.task.label_names)}) for {data.source.name}. Evaluate on the dataset the model was "
            "trained for, or map the labels to the same names."
        )
    if split not in data.splits:
        raise DataError(f"{data.source.name} has no {split!r} split with labels; it has {', '.join(data.splits)}.")
    tokenized, texts = data.splits[split], data.texts[split]

    outputs = predictor.outputs(tokenized)  # first pass compiles; the timed pass below measures throughput
    sample = texts.select(range(min(len(texts), 5000)))
    pairs = list(sample["text_pair"]) if data.task.has_text_pair else None
    start = time.perf_counter()
    predictor.predict(list(sample["text"]), pairs)
    texts_per_s = len(sample) / (time.perf_counter() - start)

    labels = tokenized.text_labels()  # [T]; outputs are per text too (windows averaged)
    metrics = {f"{split}_{k}": v for k, v in compute_metrics(data.task, outputs, labels, np.ones(len(labels))).items()}
    metrics[f"{split}_loss"] = mean_loss(data.task, outputs, labels)
    predictions = outputs[:, 0] if data.task.is_regression else outputs.argmax(-1)
    for name in extra_metrics:  # optional `evaluate` modules, by local path or hub id
        metrics.update({f"{split}_{k}": v for k, v in extra_metric(name, predictions, labels).items()})
    metrics["predict_texts_per_s"] = texts_per_s
    run_name = f"evaluate {ref.name or ref.source_run_id} on {split}"
    with tracking.tracked_run(experiment, run_name=run_name, fresh=fresh_run) as run:
        tracking.log_params(
            {
                "model_uri": model_uri,
                "split": split,
                "eval_batch_size": batch_size,
                **{k: v for k, v in dataclasses.asdict(data_config).items()},
            }
        )
        tracking.set_tags(
            {
                "bertcls_job": "evaluate",
                "evaluated_model_uri": model_uri,
                "evaluated_model_name": ref.name or "",
                "evaluated_model_version": ref.version or "",
                "source_run_id": ref.source_run_id or "",
                "dataset": data.source.name,
            }
        )
        tracking.set_environment_tags()
        tracking.log_metrics(metrics)
        if not data.task.is_regression:
            probs = softmax(outputs.astype(np.float64))
            predicted = probs.argmax(-1)
            tracking.log_table(per_class_table(predicted, labels, data.task.label_names), "per_class_metrics.json")
            tracking.log_confusion_matrix(
                labels,
                predicted,
                data.task.label_names,
                split,
                title=f"{split} confusion matrix, {model_uri}",
            )
            pair_texts = list(texts["text_pair"]) if data.task.has_text_pair else None
            mistakes = most_confident_mistakes(
                probs, labels, data.task.label_names, list(texts["text"]), pair_texts, top_mistakes
            )
            tracking.log_table(mistakes, "most_confident_mistakes.json")
        run_id = run.info.run_id
    return EvalOutcome(run_id, split, metrics)


@dataclasses.dataclass
class RegisterOutcome:
    name: str
    version: str | None
    created: bool
    alias: str | None  # the alias the candidate now holds (champion / challenger), None if nothing changed
    message: str


def _evaluated_values(name: str, candidate_version, champion_version, candidate, metric_key: str, experiment: str):
    """Evaluate both versions on the candidate's dataset and split; returns (candidate, champion) values."""
    split = "validation" if metric_key.startswith("best_val_") else "test"
    metric = metric_key.removeprefix("best_val_").removeprefix("test_")
    overrides = dataclasses.asdict(candidate.config.data)  # the candidate's dataset and split recipe
    values = []
    for version in (candidate_version, champion_version):
        outcome = evaluate(  # its own run: never the one `mlflow run -e register` made for this job
            f"models:/{name}/{version.version}",
            split=split,
            data_overrides=overrides,
            experiment=experiment,
            fresh_run=True,
        )
        values.append(outcome.metrics[f"{split}_{metric}"])
    return values[0], values[1], f"{split}_{metric}"


def register(
    experiment: str,
    metric: str,
    name: str | None = None,
    force: bool = False,
    dataset: str | None = None,
    run_id: str | None = None,
    direction: str | None = None,
) -> RegisterOutcome:
    """Register the best new run's model; @champion moves only if it beats the current champion.

    The decisions are `bertcls.promotion`'s; this function gathers their inputs and applies them. `direction`
    (max/min) ranks a metric bertcls does not know (it never guesses).
    """
    import re

    from bertcls import promotion, registry
    from bertcls.data.tasks import metric_direction

    if name is not None:
        registry.check_model_name(name)
    client = registry.client()
    registry.tag_job_run(client, "register")  # under `mlflow run`: this run must never be a candidate
    if run_id:
        candidate = registry.candidate_from_run(client, run_id, metric)
    else:
        candidate = registry.best_run(client, experiment, metric, dataset, direction=direction)
    direction = metric_direction(candidate.metric_key, direction)  # an unknown metric is refused before any write
    name = name or "bertcls-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", candidate.dataset or "model")
    champion = registry.current_alias(client, name, promotion.CHAMPION)
    if champion is not None and not run_id:
        since, on = champion.creation_timestamp, dataset or candidate.dataset  # newer runs on the same data only
        newer = registry.best_run(client, experiment, metric, on, finished_after=since, missing_ok=True,
                                  direction=direction)  # fmt: skip
        if newer is None:
            decision = promotion.no_new_run(champion.version, experiment)
            return RegisterOutcome(name, champion.version, False, None, decision.message)
        candidate = newer
    refusal = promotion.below_baseline(candidate.run_id, candidate.metric_key, candidate.value,
                                       registry.baseline_value(client, candidate), direction, force)  # fmt: skip
    if refusal is not None:
        return RegisterOutcome(name, None, False, None, refusal.message)
    version, created = registry.register_run(client, name, candidate)
    values = {"metric": candidate.metric_key, "candidate_run": candidate.run_id, "candidate_value": candidate.value}
    entry = promotion.Entry(version.version, candidate.value)

    decision = promotion.without_comparison(entry, champion.version if champion else None, candidate.metric_key)
    if decision is None:
        champion_run = registry.get_run(client, champion.run_id)
        basis = promotion.comparison_basis(
            registry.comparable(candidate.config.data, registry.run_train_config(champion_run).data),
            candidate.metric_key in champion_run.data.metrics,
        )
        if basis == promotion.LOGGED:
            mine, theirs = candidate.value, champion_run.data.metrics[candidate.metric_key]
            compared = candidate.metric_key
        else:  # different data or split: evaluate both on the candidate's dataset and split
            mine, theirs, compared = _evaluated_values(
                name, version, champion, candidate, candidate.metric_key, experiment
            )
        values.update(compared=compared, candidate_value=mine, champion_value=theirs, basis=basis)
        decision = promotion.after_comparison(
            promotion.Entry(version.version, mine), promotion.Entry(champion.version, theirs), compared, basis, force,
            direction,
        )
    alias = decision.alias
    if decision.alias is not None:
        previous = (
            champion if decision.alias == promotion.CHAMPION else registry.current_alias(client, name, decision.alias)
        )
        moved = registry.move_alias(client, name, decision.alias, version, previous, decision.reason, values)
        alias = decision.alias if moved or decision.alias == promotion.CHAMPION else None
    return RegisterOutcome(name, version.version, created, alias, decision.message)


@dataclasses.dataclass
class RunningRun:
    run_id: str
    experiment: str
    name: str
    owner: str  # host:pid, or "?" for runs without process tags
    stale_reason: str | None
    marked_failed: bool = False


def running_runs(experiment: str | None, heartbeat_timeout_s: float, mark_failed: bool = False) -> list[RunningRun]:
    """RUNNING runs with a liveness verdict; with mark_failed, the stale ones are ended FAILED."""
    import socket

    from bertcls import liveness, tracking

    host, now, out = socket.gethostname(), time.time(), []
    for run in tracking.running_runs(experiment):
        tags = run.data.tags
        reason = liveness.stale_reason(tags, run.info.start_time, now, host, heartbeat_timeout_s)
        owner = f"{tags[liveness.HOST]}:{tags.get(liveness.PID, '?')}" if liveness.HOST in tags else "?"
        found = RunningRun(run.info.run_id, run.info.experiment_id, run.info.run_name or "", owner, reason)
        if reason and mark_failed:
            tracking.mark_failed(found.run_id, reason)
            found.marked_failed = True
        out.append(found)
    return out


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
    from bertcls.data import prepare_data
    from bertcls.hub import resolve_model
    from bertcls.tokenizer import load_tokenizer

    model_dir = resolve_model(base.model)
    vocab_size = ModelConfig.from_json_file(model_dir / "config.json").vocab_size
    return prepare_data(base.data, load_tokenizer(model_dir, vocab_size)).task


def _worker_command(base: TrainConfig, sweep_config, parent_run_id: str, storage: str, study: str) -> list[str]:
    """`bertcls sweep` with this sweep's settings, as a worker nested under `parent_run_id`."""
    import sys

    from bertcls.config.fields import flatten
    from bertcls.config.jobs import job_params

    values = {**flatten(base), **dataclasses.asdict(sweep_config), "parent_run_id": parent_run_id,
              "storage": storage, "study_name": study, "workers": 1}  # fmt: skip
    command = [sys.executable, "-m", "bertcls.cli", "sweep"]
    for param in job_params("sweep"):
        value = values.get(param.name)
        if value is not None and param.name in values:
            command += [param.flag, str(value).lower() if isinstance(value, bool) else str(value)]
    return command


def _trial_table(study, space, metric: str):
    """One row per trial of the study (surplus ones left out): params, state, best_val_<metric>, best epoch,
    epochs run, wall time, run id, error."""
    import pandas as pd

    from bertcls import search

    rows = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        if attrs.get(search.SURPLUS):
            continue
        rows.append({
            "trial": trial.number, "state": trial.state.name,
            **{k: trial.params.get(k) for k in [*space.choices, *space.ranges]},
            f"best_val_{metric}": attrs.get("best_value", trial.value),
            **({} if metric == "loss" else {"best_val_loss": attrs.get("best_val_loss")}),
            "best_epoch": attrs.get("best_epoch"), "epochs_run": attrs.get("epochs_run"),
            "pruned": trial.state.name == "PRUNED", "wall_time_s": attrs.get("wall_time_s"),
            "run_id": attrs.get("run_id"), "error": attrs.get("error"),
        })  # fmt: skip
    return pd.DataFrame(rows)


SWEEP_POLL_S = 5  # how often a worker with nothing left to train looks at the trials others run


def _beat(run_id: str) -> None:
    """Refresh a run's heartbeat tag; a store that does not answer now is tried again at the next beat."""
    import contextlib

    from bertcls import liveness, tracking

    with contextlib.suppress(Exception):
        tracking.set_run_tags(run_id, liveness.heartbeat_tag())


def _run_trials(study, space, base: TrainConfig, metric: str, parent_run_id: str, study_name: str) -> int:
    """Ask, train and tell until the study's budget is used up; returns how many trials this process trained."""
    import optuna

    from bertcls import search, tracking

    trained, waited_for = 0, None
    experiment_id = tracking.get_run(parent_run_id).info.experiment_id
    while True:
        for number, reason in search.fail_stale(study):  # a dead worker's trial: FAIL, and a retry copy waits
            log.warning("trial %d failed: %s; its grid point is retried", number, reason)
            for run in tracking.find_runs([experiment_id], {"sweep_study": study_name, "trial": str(number)}):
                if run.info.status == "RUNNING":
                    tracking.mark_failed(run.info.run_id, f"sweep trial {number}: {reason}")
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
        tags = {"sweep_study": study_name, "trial": str(trial.number)}
        started = time.perf_counter()
        with search.Heartbeat(study, trial, also=lambda: _beat(parent_run_id)):
            values = {}
            try:
                values = space.suggest(trial)
                pruning = search.PruningCallback(trial, metric)
                outcome = train(search.trial_config(base, values), experiment=None, run_name=f"trial {trial.number}",
                                callbacks=(pruning,), parent_run_id=parent_run_id, tags=tags)  # fmt: skip
            except KeyboardInterrupt:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                search.retry_callback()(study, study._storage.get_trial(trial._trial_id))  # the re-run retries it
                raise
            except Exception as err:  # the trial fails, the sweep goes on
                message = str(err) or type(err).__name__
                runs = tracking.find_runs([tracking.get_run(parent_run_id).info.experiment_id], tags)
                if runs:
                    tracking.set_run_tags(runs[0].info.run_id, {"error": message[:5000]})
                    run_id = runs[0].info.run_id
                else:  # it failed before its run existed (a bad combination): record it as a FAILED run
                    run_id = tracking.log_failed_run(parent_run_id, f"trial {trial.number}", values, tags, message)
                for key, value in {"run_id": run_id, "error": message[:1000]}.items():
                    trial.set_user_attr(key, value)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                log.warning("trial %d failed: %s", trial.number, message)
                continue
        trained += 1
        epochs_run = outcome.epochs_run
        value = outcome.metrics[f"best_val_{metric}"]
        attrs = {"run_id": outcome.run_id, "best_epoch": outcome.best_epoch, "best_value": value,
                 "best_val_loss": outcome.metrics.get("best_val_loss"),
                 "wall_time_s": round(time.perf_counter() - started, 1), "epochs_run": epochs_run}  # fmt: skip
        for key, item in attrs.items():
            trial.set_user_attr(key, item)
        if pruning.pruned_at is not None:
            tracking.set_run_tags(outcome.run_id, {"pruned": "true", "epochs_run": str(pruning.pruned_at)})
            trial.set_user_attr("epochs_run", pruning.pruned_at)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, value)


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
    import subprocess
    import tempfile

    from bertcls import liveness, search, tracking
    from bertcls.data.tasks import metric_direction

    base = dataclasses.replace(base, data=_with_absolute_files(base.data))
    space = search.search_space(sweep_config)  # every refusal before anything runs
    search.check_grid(base, space)
    storage_url = sweep_config.storage or search.default_storage(tracking.tracking_uri())
    storage = search.open_storage(storage_url)
    task = _sweep_task(base)
    metric = sweep_config.metric or task.primary_metric
    allowed = (*task.metric_names(), "loss")
    if metric not in allowed:
        raise ConfigError(f"metric {metric!r} is not a validation metric of {task.name}; choose one of "
                          f"{', '.join(allowed)}.")  # fmt: skip
    name = sweep_config.study_name or search.study_name(base, space, metric)
    study = search.open_study(storage, name, space, metric_direction(metric), sweep_config.pruner,
                              sweep_config.sampler_seed)  # fmt: skip

    if sweep_config.parent_run_id:  # a worker: trials nest under another process's (or machine's) sweep run
        if tracking.get_run(sweep_config.parent_run_id) is None:
            raise ConfigError(f"parent_run_id {sweep_config.parent_run_id}: no such run in {tracking.tracking_uri()}.")
        trained = _run_trials(study, space, base, metric, sweep_config.parent_run_id, name)
        table = _trial_table(study, space, metric)
        return SweepOutcome(None, name, search.redacted(storage_url), metric, table, None, None, trained)

    with tracking.tracked_run(experiment, run_name or f"sweep {name}", system_metrics=system_metrics) as parent:
        parent_id = parent.info.run_id
        tracking.set_job_tag("sweep")
        tracking.set_tags(liveness.process_tags())  # host, pid: `bertcls runs --stale` finds a killed sweep
        tracking.set_tags({"sweep_study": name, "sweep_storage": search.redacted(storage_url), "metric": metric})
        definition = {"base": base.flat_params(), "space": space.describe(), "metric": metric, "study": name,
                      "budget": space.budget, "sampler": "grid" if space.is_grid else "tpe",
                      "pruner": sweep_config.pruner}  # fmt: skip
        tracking.log_params({"sweep_" + k: v for k, v in dataclasses.asdict(sweep_config).items() if v is not None})
        tracking.log_dict(definition, "sweep.json")
        workers = []
        with tempfile.TemporaryDirectory(prefix="bertcls-workers-") as logs:
            for index in range(1, sweep_config.workers):
                log_path = Path(logs) / f"worker-{index}.log"
                with open(log_path, "w") as out:
                    command = _worker_command(base, sweep_config, parent_id, storage_url, name)
                    workers.append((subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT), log_path))
            trained = _run_trials(study, space, base, metric, parent_id, name)
            for process, _ in workers:
                process.wait()
            for _, log_path in workers:
                tracking.log_artifact(log_path, "workers")
        table = _trial_table(study, space, metric)
        tracking.log_table(table, "trials.json")
        column = f"best_val_{metric}"
        tracking.log_sweep_figures(table, column, [*space.choices, *space.ranges])
        complete = table[table["state"] == "COMPLETE"]
        best_run_id, best_value = None, None
        if not complete.empty:
            best = _best_trial(complete, column, metric_direction(metric))
            best_run_id, best_value = best["run_id"], float(best[column])
            tracking.set_run_tags(best_run_id, {"best_trial": "true"})
            tracking.set_tags({"best_run_id": best_run_id})
            tracking.log_metrics({column: best_value})  # best_val_<metric>, as the children name it
        tracking.log_metrics({"trials_complete": float(len(complete)),
                              "trials_pruned": float((table["state"] == "PRUNED").sum()),
                              "trials_failed": float((table["state"] == "FAIL").sum())})  # fmt: skip
    return SweepOutcome(parent_id, name, search.redacted(storage_url), metric, table, best_run_id, best_value,
                        trained)  # fmt: skip


def describe_sweep(outcome: SweepOutcome) -> str:
    """The lines printed at the end of `sweep`: the trial table and the best run."""
    shown = [c for c in outcome.table.columns if c not in ("error",)] if len(outcome.table) else []
    lines = [f"study {outcome.study_name} ({outcome.storage}): {len(outcome.table)} trials, "
             f"{outcome.trained} trained by this process"]  # fmt: skip
    if shown:
        lines.append(outcome.table[shown].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if outcome.parent_run_id:
        lines.append(f"sweep run {outcome.parent_run_id}")
    if outcome.best_run_id:
        lines.append(f"best: run {outcome.best_run_id}, best_val_{outcome.metric} = {outcome.best_value:.4f}   "
                     f"(promote: mlflow run . -e register -P run_id={outcome.best_run_id})")  # fmt: skip
    return "\n".join(lines)


@dataclasses.dataclass
class ExportOutcome:
    directory: Path
    source_run_id: str | None
    hub_url: str | None


def _card_for(ref, label_names: list[str]) -> str:
    """The Hugging Face model card, from the source run's own records (params, best/test metrics)."""
    from bertcls import tracking
    from bertcls.model_card import CardFacts, base_licence, render

    run = tracking.get_run(ref.source_run_id) if ref.source_run_id else None
    params = dict(run.data.params) if run else {}
    metrics = {k: v for k, v in (run.data.metrics if run else {}).items() if k.startswith(("best_val_", "test_"))}
    best_epoch = int(run.data.metrics["best_epoch"]) if run and "best_epoch" in run.data.metrics else None
    facts = CardFacts(params.get("model", "unknown"), base_licence(params.get("model_dir")),
                      run.data.tags.get("dataset", "text") if run else "text", tuple(label_names), params, metrics,
                      ref.source_run_id, best_epoch)  # fmt: skip
    return render(facts, hugging_face=True)


def export(model_uri: str, directory: str, push_to_hub: str | None = None) -> ExportOutcome:
    """Write a logged or registered model as a Hugging Face directory; log it to its run; push it if asked."""
    import json

    from bertcls import hf_export, tracking
    from bertcls.registry import resolve_model_uri

    ref = resolve_model_uri(model_uri)
    meta = json.loads((ref.local_dir / "bertcls_config.json").read_text(encoding="utf-8"))
    out = hf_export.export(ref.local_dir, Path(directory), _card_for(ref, meta.get("label_names") or []))
    if ref.source_run_id:
        tracking.log_artifacts_to(ref.source_run_id, out, "hf_export")
    url = _push(out, push_to_hub) if push_to_hub else None
    return ExportOutcome(out, ref.source_run_id, url)


def _push(directory: Path, repo: str) -> str:
    """Upload the export to the Hugging Face hub (a clear error offline or without a token)."""
    try:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(repo, exist_ok=True)
        commit = api.upload_folder(folder_path=str(directory), repo_id=repo, commit_message="bertcls export")
    except Exception as err:  # offline, no token, no permission: the hub client's own message
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise ConfigError(
            f"Could not push {directory} to the Hugging Face hub repo {repo!r}: {first}. Pushing needs network access "
            "and a token (`huggingface-cli login` or HF_TOKEN); the export itself is complete in that directory."
        ) from None
    return str(getattr(commit, "commit_url", f"https://huggingface.co/{repo}"))


@dataclasses.dataclass
class PretrainOutcome:
    run_id: str
    encoder_uri: str
    history: list[dict[str, float]]  # [0] is the held-out score before training
    wall_time_s: float
    experiment: str  # where the run is: the fine-tuning command names it


def pretrain(
    config, experiment: str | None = DEFAULT_EXPERIMENT, run_name: str | None = None, system_metrics: bool = False
) -> PretrainOutcome:
    """Continue masked-LM pre-training (config: `PretrainConfig`); log per-epoch MLM loss and the adapted encoder
    as the run's `encoder` artifact, a Hugging Face directory that `train -P model=runs:/<id>/encoder` reads."""
    import math

    import jax

    from bertcls import tracking
    from bertcls.config.jobs import job_params
    from bertcls.data.batching import check_batch_size
    from bertcls.data.corpus import load_corpus, pack_blocks
    from bertcls.hub import resolve_model
    from bertcls.model.mlm_weights import load_masked_lm, save_encoder
    from bertcls.model_card import base_licence, render_encoder
    from bertcls.paths import cache_root
    from bertcls.tokenizer import load_tokenizer
    from bertcls.train.optim import make_optimizer
    from bertcls.train.pretraining import Masking, Pretrainer, fit, heldout_batches
    from bertcls.train.progress import ProgressBar
    from bertcls.train.steps import enable_compilation_cache, make_data_mesh
    from bertcls.train.strategy import path_names

    started = time.perf_counter()
    check_batch_size(config.batch_size, jax.device_count())
    model_dir = resolve_model(config.model)
    arch = ModelConfig.from_json_file(model_dir / "config.json")
    length = config.data.max_seq_length
    if length > arch.max_position_embeddings:
        raise ConfigError(
            f"max_seq_length {length} exceeds the model's position limit ({arch.max_position_embeddings} positions "
            f"in {config.model}). Use max_seq_length <= {arch.max_position_embeddings}."
        )
    tokenizer = load_tokenizer(model_dir, arch.vocab_size)
    if tokenizer.mask_token_id is None:
        raise ConfigError(f"The tokenizer of {config.model} has no [MASK] token: it cannot train as a masked LM.")
    corpus = load_corpus(config.data)
    train_blocks = pack_blocks(tokenizer, corpus.texts["train"], length)  # ([N, S] ids, [N, S] mask)
    heldout_blocks = pack_blocks(tokenizer, corpus.texts["heldout"], length)
    masking = Masking(np.asarray(tokenizer.all_special_ids), tokenizer.mask_token_id, arch.vocab_size,
                      config.mlm_probability)  # fmt: skip
    heldout = heldout_batches(*heldout_blocks, masking, config.batch_size, config.seed)
    model, head_from_checkpoint = load_masked_lm(model_dir, arch, seed=config.seed)
    enable_compilation_cache(cache_root("xla"))
    total_steps = math.ceil(len(train_blocks[0]) / config.batch_size) * config.epochs
    head_scale = 1.0 if head_from_checkpoint else config.new_head_lr / config.lr  # a random head must learn fast
    lr_scale = lambda path: head_scale if path_names(path)[0] == "mlm" else 1.0  # noqa: E731
    trainer = Pretrainer(model, make_optimizer(config.optim, total_steps, lr_scale), make_data_mesh(), config.seed)

    values = {**dataclasses.asdict(config), **dataclasses.asdict(config.data)}
    params = {p.name: values[p.name] for p in job_params("pretrain") if p.name in values}
    with tracking.tracked_run(experiment, run_name, system_metrics=system_metrics) as run:
        run_id = run.info.run_id
        tracking.log_params({**params, "model_dir": str(model_dir), "corpus_recipe": corpus.recipe,
                             "train_texts": len(corpus.texts["train"]), "heldout_texts": len(corpus.texts["heldout"]),
                             "train_blocks": len(train_blocks[0]), "heldout_blocks": len(heldout_blocks[0]),
                             "train_tokens": int(train_blocks[1].sum()),
                             "mlm_head": "from the checkpoint" if head_from_checkpoint else "new",
                             "optimizer_steps": total_steps})  # fmt: skip
        tracking.set_job_tag("pretrain")
        tracking.set_tags({"dataset": corpus.name})
        tracking.set_environment_tags()

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            tracking.log_metrics(metrics, step=epoch)
            log.info("epoch %d: %s", epoch, ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))

        history = fit(trainer, train_blocks, heldout, masking, config.batch_size, config.epochs, on_epoch,
                      ProgressBar(rate_label="predictions_per_s"))  # fmt: skip
        tracking.log_mlm_curve(history)
        card = render_encoder(config.model, base_licence(str(model_dir)), corpus.name, corpus.recipe,
                              {k: str(v) for k, v in params.items()}, history, run_id)  # fmt: skip
        with tracking.staging_dir() as staging:
            tracking.log_artifacts_to(run_id, save_encoder(trainer.model(), tokenizer, staging / "encoder", card),
                                      "encoder")  # fmt: skip
        encoder_uri = f"runs:/{run_id}/encoder"
        tracking.set_tags({"encoder_uri": encoder_uri})
    experiment_name = tracking.experiment_name(run.info.experiment_id)
    return PretrainOutcome(run_id, encoder_uri, history, time.perf_counter() - started, experiment_name)


def describe_pretrain(outcome: PretrainOutcome) -> str:
    """The lines printed at the end of `pretrain`."""
    import shlex

    before, after = outcome.history[0], outcome.history[-1]
    return "\n".join([
        f"run {outcome.run_id}: {len(outcome.history) - 1} epoch(s), wall time {outcome.wall_time_s:.1f} s",
        f"  held-out MLM loss {before['val_mlm_loss']:.4f} -> {after['val_mlm_loss']:.4f} "
        f"(perplexity {before['val_perplexity']:.2f} -> {after['val_perplexity']:.2f})",
        f"encoder: {outcome.encoder_uri}",
        f"fine-tune it: mlflow run . -e train --env-manager local --experiment-name {shlex.quote(outcome.experiment)} "
        f"-P model={outcome.encoder_uri}   (plus your data: -P dataset=... as pretrained, or another)",
    ])  # fmt: skip
