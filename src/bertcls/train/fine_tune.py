"""`fine_tune(config)`: a whole fine-tuning as a library call, with no tracking at all.

`prepare` loads the model, tokenizer and data and refuses bad input before any work; `fit` trains (reporting
through callbacks); `finish` takes the best epoch, predicts the test split and scores the majority-class
baseline. The train job (`bertcls.jobs.train`) is these three plus MLflow; a notebook calls `fine_tune`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from bertcls.config import AUTO_PRECISION, PRECISION_DTYPES, TrainConfig
from bertcls.config.training import default_precision
from bertcls.data import PreparedData, prepare_data
from bertcls.data.batching import check_batch_size
from bertcls.data.pipeline import class_warnings
from bertcls.data.reading import ReadingSettings
from bertcls.data.tasks import MULTI_LABEL_METRICS
from bertcls.errors import ConfigError
from bertcls.evaluation import multilabel
from bertcls.evaluation.calibration import Calibration, calibrate, calibration_metrics
from bertcls.evaluation.metrics import baseline_metrics
from bertcls.hub import resolve_model
from bertcls.model.bert import BertClassifier
from bertcls.model.config import TOKEN_HEAD, ModelConfig
from bertcls.model.tokenizer import load_tokenizer
from bertcls.model.weights import LoadReport, load_hf_checkpoint, save_model
from bertcls.paths import cache_root
from bertcls.train.class_weights import class_weight_vector, example_weights, positive_weights
from bertcls.train.distillation import Teacher
from bertcls.train.loop import FitResult, SplitPredictions, fit, predict_split, steps_per_epoch
from bertcls.train.optim import make_optimizer
from bertcls.train.progress import ProgressBar, rate_label
from bertcls.train.steps import Objective, Trainer, enable_compilation_cache, make_data_mesh
from bertcls.train.strategy import lr_scale_fn, trainable_filter

log = logging.getLogger("bertcls")


@dataclasses.dataclass
class Setup:
    """Everything one fine-tuning needs, loaded and checked against each other."""

    config: TrainConfig
    model_dir: Path  # where the starting weights and tokenizer were read
    tokenizer: Any
    data: PreparedData
    data_warnings: list[str]  # e.g. a class too small to be scored; also logged as warnings
    report: LoadReport  # which parameters the checkpoint lacked (the new head)
    trainer: Trainer  # device state and compiled steps
    class_weights: Any = None  # [C] float32 loss weight per class (class_weights), None: unweighted


@dataclasses.dataclass
class FineTuned:
    """A finished fine-tuning: the best epoch's model and what it scored."""

    setup: Setup
    result: FitResult  # per-epoch history, best epoch, best validation predictions
    metrics: dict[str, float]  # best_epoch, best_val_*, test_* (with a test split), baseline_{val,test}_*
    test: SplitPredictions | None  # the best model's outputs on the test split, one row per text
    calibration: Calibration = dataclasses.field(default_factory=Calibration)  # the temperature saved with the model

    @property
    def model(self) -> BertClassifier:
        """The best epoch's model (the trainer holds its weights after `finish`)."""
        return self.setup.trainer.model()

    def save(self, directory: str | Path) -> Path:
        """Write the model with its tokenizer and reading settings; `bertcls.load(directory)` predicts with it."""
        return save_trained(self.setup, self.model, Path(directory), self.calibration)


def check_model_against_data(model_config: ModelConfig, config: TrainConfig) -> None:
    """Refuse lengths beyond the model's positions and freezing more layers than it has."""
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


def prepare(
    config: TrainConfig, resolve: Callable[[str], Path] = resolve_model, teacher: Teacher | None = None
) -> Setup:
    """Load model, tokenizer and data for `config`; `resolve` finds the model's directory (the train job's also
    reads a run's artifacts); `teacher`: distil it (its logits on every training row, the loss's KL term)."""
    check_batch_size(config.batch_size, jax.device_count())
    check_batch_size(config.eval_batch_size, jax.device_count())
    model_dir = resolve(config.model)
    arch = ModelConfig.from_json_file(
        model_dir / "config.json",
        head=config.head,
        compute_dtype=PRECISION_DTYPES[default_precision() if config.precision == AUTO_PRECISION else config.precision],
        head_batchnorm=config.head_batchnorm,
    )
    check_model_against_data(arch, config)
    tokenizer = load_tokenizer(model_dir, arch.vocab_size)
    data = prepare_data(config.data, tokenizer)
    if teacher is not None:
        data = teacher.apply(data, tokenizer, config.data.max_seq_length)
    _check_calibration_split(config, data)
    weights = _class_weights(config, data)
    data_warnings = class_warnings(data)
    for warning in data_warnings:
        log.warning("%s", warning)
    model_config = dataclasses.replace(arch, num_labels=data.task.num_labels)
    if data.task.token_level:  # a tag per word: the per-token head whatever `head` says (it chooses text heads)
        model_config = dataclasses.replace(model_config, head=TOKEN_HEAD, head_batchnorm=False)
    model, report = load_hf_checkpoint(model_dir, model_config, seed=config.seed)
    enable_compilation_cache(cache_root("xla"))
    total_steps = steps_per_epoch(len(data.splits["train"]), config.effective_batch_size) * config.epochs
    tx = make_optimizer(config.optim, total_steps, lr_scale_fn(config.optim.llrd, arch.num_layers))
    trainable = trainable_filter(config.finetune, config.freeze_layers, arch.num_layers)
    trainer = Trainer(model, tx, make_data_mesh(), _objective(config, data, weights, teacher), config.seed, trainable)
    return Setup(config, model_dir, tokenizer, data, data_warnings, report, trainer, weights)


def _objective(config: TrainConfig, data: PreparedData, weights, teacher: Teacher | None = None) -> Objective:
    """The training loss of the task: binary cross-entropy (with each label's positive weight) for multi-label;
    focal with focal_gamma > 0, which a regression task refuses (it has no class probability to focus on)."""
    gamma = float(config.focal_gamma)
    if data.task.multi_label:
        pos_weight = None if weights is None else tuple(float(w) for w in weights)
        return Objective("binary_cross_entropy", pos_weight, gamma)
    if data.task.is_regression:
        if gamma:
            raise ConfigError(
                f"focal_gamma applies to classification; {data.task.name} is a regression task (its loss is the "
                "squared error). Drop focal_gamma (or set it to 0)."
            )
        return Objective("squared_error")
    if teacher is not None:
        alpha, temperature = float(teacher.alpha), float(teacher.temperature)
        return Objective("cross_entropy", focal_gamma=gamma, distill_alpha=alpha, distill_temperature=temperature)
    return Objective("cross_entropy", focal_gamma=gamma)


def _check_calibration_split(config: TrainConfig, data: PreparedData) -> None:
    """A calibration split held out of training must be used: refused with calibrate=false for one label per text
    (multi-label still tunes its thresholds there)."""
    if "calibration" in data.splits and not config.calibrate and not data.task.multi_label:
        raise ConfigError(
            f"calibration_fraction={config.data.calibration_fraction:g} holds training texts out to fit the "
            "temperature on, but calibrate=false fits none, so they would be lost to training. Drop "
            "calibration_fraction, or drop calibrate=false."
        )


def _class_weights(config: TrainConfig, data: PreparedData):
    """The per-class loss weights of `config.class_weights` ([C], or None), set on the training rows in place;
    multi-label: each label's positive weight [L] (the loss applies it)."""
    if config.class_weights.strip() == "none":
        return None
    if data.task.multi_label:
        weights = positive_weights(config.class_weights, data.splits["train"].text_labels(), data.task.label_names)
        log.info(
            "positive weights: %s",
            ", ".join(f"{n} {w:.4g}" for n, w in zip(data.task.label_names, weights, strict=True)),
        )
        return weights
    if data.task.is_regression or data.task.token_level:
        raise ConfigError(
            f"class_weights applies to text classification; {data.task.name} is a {data.task.kind} task. Drop "
            "class_weights (or set it to none)."
        )
    train = data.splits["train"]
    weights = class_weight_vector(config.class_weights, train.text_labels(), tuple(data.task.label_names))
    data.splits["train"] = dataclasses.replace(train, weights=example_weights(weights, train.labels))
    log.info(
        "class weights: %s", ", ".join(f"{n} {w:.4g}" for n, w in zip(data.task.label_names, weights, strict=True))
    )
    return weights


def _baselines(data: PreparedData) -> dict[str, float]:
    """What always answering the training set's majority class scores on validation and test."""
    train_labels = data.splits["train"].text_labels()
    return {
        f"baseline_{prefix}_{name}": value
        for prefix, split in (("val", "validation"), ("test", "test"))
        if split in data.splits
        for name, value in baseline_metrics(data.task, train_labels, data.splits[split].text_labels()).items()
    }


def finish(setup: Setup, result: FitResult) -> FineTuned:
    """Load the best epoch's weights, predict the test split, and gather the run's final figures."""
    config, data, trainer = setup.config, setup.data, setup.trainer
    trainer.load_model_state(result.best_model_state)
    metrics = {"best_epoch": float(result.best_epoch)}
    metrics.update({f"best_val_{k}": v for k, v in result.best_validation.metrics.items()})
    metrics["best_val_loss"] = result.best_validation.loss  # register -P metric=val_loss ranks by it
    test = None
    if "test" in data.splits:
        test = predict_split(trainer, data.splits["test"], data.task, config.eval_batch_size, data.buckets)
        metrics.update({f"test_{k}": v for k, v in test.metrics.items()})
        metrics["test_loss"] = test.loss
    metrics.update(_baselines(data))
    calibration = Calibration()
    fit_on = result.best_validation  # the decisions' split: a held-out calibration split when there is one
    if "calibration" in data.splits and (config.calibrate or data.task.multi_label):
        fit_on = predict_split(trainer, data.splits["calibration"], data.task, config.eval_batch_size, data.buckets)
    if data.task.multi_label:
        calibration = _decide_labels(data.task, result.best_validation, fit_on, test, metrics, config.calibrate)
    elif not data.task.is_regression and not data.task.token_level:
        calibration = _calibrate(result.best_validation, fit_on, test, metrics, fit=config.calibrate)
    return FineTuned(setup, result, metrics, test, calibration)


def _decide_labels(
    task,
    validation: SplitPredictions,
    fit_on: SplitPredictions,
    test: SplitPredictions | None,
    metrics: dict,
    fit: bool,
):
    """Multi-label: per-label temperatures (if `fit`) and thresholds from the best epoch's outputs on `fit_on`
    (validation, or the calibration split), then the test split scored as the served model decides (`test_*`,
    replacing the 0.5-threshold figures), with ECE / Brier / NLL before and after. Returns them as the model's
    Calibration."""
    fitted_split = _split_name(validation, fit_on)
    decisions = multilabel.fit_decisions(fit_on.outputs, fit_on.labels, task.label_names, fit, fitted_split)
    for note in decisions.notes:
        log.warning("multi-label decisions: %s.", note)
    if not fit:
        log.info("calibrate=false: the probabilities are the model's own (temperature 1 for every label)")
    thresholds = np.asarray(decisions.thresholds)
    metrics["mean_threshold"] = float(thresholds.mean())
    for prefix, split in (("best_val", validation), ("test", test)):
        if split is None:
            continue
        probs = multilabel.sigmoid_probs(split.outputs, decisions.temperatures)
        tuned = multilabel.multilabel_metrics(
            multilabel.decide(probs, thresholds), split.labels, probs, task.per_class_labels()
        )
        if prefix == "test":
            metrics.update({f"test_{k}": v for k, v in tuned.items()})
        else:  # the per-epoch val_* figures (threshold 0.5) stay; these are the tuned thresholds' on validation
            metrics.update({f"best_val_tuned_{k}": tuned[k] for k in MULTI_LABEL_METRICS})
        found = multilabel.calibration_metrics(split.outputs, split.labels, decisions.temperatures)
        metrics.update({f"{prefix}_{k}": v for k, v in found.items()})
    if fit_on is not validation:
        found = multilabel.calibration_metrics(fit_on.outputs, fit_on.labels, decisions.temperatures)
        metrics.update({f"calibration_{k}": v for k, v in found.items()})
    note = "; ".join(decisions.notes)
    fitted = len(fit_on.labels) if fit else 0
    return Calibration(1.0, fitted, note, decisions.temperatures, decisions.thresholds, fitted_split=fitted_split)


def _split_name(validation: SplitPredictions, fit_on: SplitPredictions) -> str:
    return "validation" if fit_on is validation else "calibration"


def _calibrate(
    validation: SplitPredictions, fit_on: SplitPredictions, test: SplitPredictions | None, metrics: dict, fit: bool
) -> Calibration:
    """Temperature scaling fitted on the best epoch's outputs on `fit_on` (validation, or the calibration split; if
    `fit`); ECE, Brier and NLL with and without it (best_val_*, calibration_*, test_*) and the temperature added to
    `metrics`. A fit refused (too few texts) is logged; without `fit` the measures are still reported, at T = 1."""
    if fit:
        calibration = calibrate(fit_on.outputs, fit_on.labels, split=_split_name(validation, fit_on))
    else:
        calibration = Calibration(note="calibrate=false: the probabilities are the model's own (temperature 1)")
    if calibration.note and fit:
        log.warning("calibration: %s.", calibration.note)
    metrics["temperature"] = calibration.temperature
    held_out = None if fit_on is validation else fit_on
    for prefix, split in (("best_val", validation), ("calibration", held_out), ("test", test)):
        if split is not None:
            found = calibration_metrics(split.outputs, split.labels, calibration.temperature)
            metrics.update({f"{prefix}_{k}": v for k, v in found.items()})
    return calibration


def fine_tune(config: TrainConfig, callbacks: Sequence[Any] = (), progress_bar: bool = True) -> FineTuned:
    """Fine-tune `config.model` on `config.data`; returns the best epoch's model, its metrics and predictions.

    callbacks: more fit() callbacks (`bertcls.train.callbacks.Callback`), e.g. one that records each epoch's metrics.
    """
    setup = prepare(config)
    shown = [ProgressBar(rate_label(setup.data.task))] if progress_bar else []
    return finish(setup, fit(setup.trainer, setup.data, config, [*shown, *callbacks]))


def reading_settings(setup: Setup) -> ReadingSettings:
    """How the trained model reads text: saved with it, so predictions read texts as training did."""
    data, config = setup.data, setup.config.data
    return ReadingSettings(
        task=data.task.name,
        label_names=tuple(data.task.label_names),
        primary_metric=data.task.primary_metric,
        max_seq_length=config.max_seq_length,
        buckets=tuple(data.buckets),
        has_text_pair=data.task.has_text_pair,
        long_text=config.long_text,
        window_overlap=config.window_overlap,
        max_windows=config.max_windows,
        task_type="ner" if data.task.token_level else "multilabel" if data.task.multi_label else "text",
        tag_scheme=data.task.tag_scheme,
        tag_decoding=config.tag_decoding,
    )


def save_trained(setup: Setup, model: BertClassifier, directory: Path, calibration: Calibration | None = None) -> Path:
    """Our format (weights + config + reading settings + the calibration, when decided) and the tokenizer, in
    `directory`."""
    extra = {"reading_settings": reading_settings(setup).to_dict()}
    if calibration is not None:  # also when not fitted: its note says why
        extra["calibration"] = calibration.to_dict()
    save_model(model, directory, list(setup.data.task.label_names), extra=extra)
    setup.tokenizer.save_pretrained(str(directory))
    return directory


def example_texts(data: PreparedData, count: int = 3) -> tuple[list[str], list[str] | None]:
    """A few validation texts (and pairs): the logged model's input example (a tagger's: its words joined by
    spaces)."""
    examples = data.texts["validation"].select(range(min(count, len(data.texts["validation"]))))
    pairs = list(examples["text_pair"]) if data.task.has_text_pair else None
    return list(examples["text"]), pairs
