"""The evaluate job: a logged or registered model on a dataset split; metrics, tables and figures in a new run."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from bertcls.config import DEFAULT_EXPERIMENT, DataConfig
from bertcls.data import PreparedData, prepare_data
from bertcls.data.tags import OUTSIDE
from bertcls.errors import DataError
from bertcls.evaluation import figures, multilabel
from bertcls.evaluation.calibration import calibration_metrics
from bertcls.evaluation.metrics import (
    compute_metrics,
    extra_metric,
    mean_loss,
    most_confident_mistakes,
    per_class_table,
)
from bertcls.evaluation.tagging import predicted_tags, tagging_metrics, word_loss
from bertcls.jobs.data_config import data_config_for
from bertcls.serving.predictor import Predictor
from bertcls.serving.tagging import entities_frame
from bertcls.tracking import runs
from bertcls.tracking.registry import resolve_model_uri, run_train_config
from bertcls.train.inference import infer_word_outputs
from bertcls.train.loop import SplitPredictions


@dataclasses.dataclass
class EvalOutcome:
    run_id: str
    split: str
    metrics: dict[str, float]


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
    ref = resolve_model_uri(model_uri)
    predictor, data_config, data = model_and_data(ref, split, data_overrides or {}, batch_size)
    outputs, metrics = _scores(predictor, data, split, extra_metrics)
    run_name = f"evaluate {ref.name or ref.source_run_id} on {split}"
    with runs.tracked_run(experiment, run_name=run_name, fresh=fresh_run) as run:
        params = {"model_uri": model_uri, "split": split, "eval_batch_size": batch_size}
        runs.log_params({**params, **dataclasses.asdict(data_config)})
        runs.set_tags(
            {
                "bertcls_job": "evaluate",
                "evaluated_model_uri": model_uri,
                "evaluated_model_name": ref.name or "",
                "evaluated_model_version": ref.version or "",
                "source_run_id": ref.source_run_id or "",
                "dataset": data.source.name,
            }
        )
        runs.set_environment_tags()
        runs.log_metrics(metrics)
        if data.task.token_level:
            result = SplitPredictions(outputs, data.splits[split].word_labels, 0.0, {}, data.splits[split].word_counts)
            runs.log_outputs(
                figures.tagging_outputs(data.task, {split: result}, 0, title=f"{split} word tags, {model_uri}")
            )
        elif data.task.multi_label:
            result = SplitPredictions(outputs, data.splits[split].text_labels(), 0.0, {})
            runs.log_outputs(figures.multilabel_outputs(data.task, {split: result}, predictor.calibration))
        elif not data.task.is_regression:
            title = f"{split} confusion matrix, {model_uri}"
            runs.log_outputs(_tables(predictor, data, split, outputs, top_mistakes, title))
    return EvalOutcome(run.info.run_id, split, metrics)


def model_and_data(ref, split: str, overrides: dict, batch_size: int) -> tuple[Predictor, DataConfig, PreparedData]:
    """The model, and the dataset split it is evaluated on: the source run's recipe unless overridden, its texts
    read as the model was trained (its own saved settings decide, not the run's params)."""
    source = run_train_config(ref.source_run_id) if ref.source_run_id else None
    data_config = data_config_for(source.data if source else None, overrides)
    predictor = Predictor.from_dir(ref.local_dir, batch_size=batch_size)
    data_config = dataclasses.replace(data_config, **predictor.settings.data_fields())
    data = prepare_data(data_config, predictor.tokenizer)
    if data.task.token_level:  # decoded under the model's own scheme, as it serves ("" before it was saved: argmax)
        data = dataclasses.replace(data, task=dataclasses.replace(data.task, tag_scheme=predictor.settings.tag_scheme))
    if not data.task.is_regression and list(data.task.label_names) != predictor.label_names:
        raise DataError(
            f"The model's labels ({', '.join(predictor.label_names)}) do not match the dataset's "
            f"({', '.join(data.task.label_names)}) for {data.source.name}. Evaluate on the dataset the model was "
            "trained for, or map the labels to the same names."
        )
    if split not in data.splits:
        raise DataError(f"{data.source.name} has no {split!r} split with labels; it has {', '.join(data.splits)}.")
    return predictor, data_config, data


def _tagging_scores(predictor: Predictor, data: PreparedData, split: str):
    """([W, C] outputs per word, {<split>_<metric>: value} with loss and sentences per second) of a word tagger."""
    tokenized, texts = data.splits[split], data.texts[split]
    fallback = data.task.label_names.index(OUTSIDE) if OUTSIDE in data.task.label_names else 0
    forward = (predictor.forward_batch, predictor.batch_size, predictor.buckets, data.task.num_labels, fallback)
    outputs, scored = infer_word_outputs(tokenized, *forward)  # first pass compiles; the timed one measures
    sample = texts.select(range(min(len(texts), 5000)))
    start = time.perf_counter()
    entities_frame(predictor, list(sample["text"]), None)
    texts_per_s = len(sample) / (time.perf_counter() - start)
    labels = tokenized.word_labels
    found = tagging_metrics(
        data.task, predicted_tags(data.task, outputs, tokenized.word_counts), labels, tokenized.word_counts
    )
    metrics = {f"{split}_{k}": v for k, v in found.items()}
    metrics[f"{split}_loss"] = word_loss(outputs, labels, scored)
    metrics["predict_texts_per_s"] = texts_per_s
    return outputs, metrics


def _scores(predictor: Predictor, data: PreparedData, split: str, extra_metrics: tuple[str, ...]):
    """([T, C] outputs per text, {<split>_<metric>: value} with loss, extra metrics and texts per second)."""
    if data.task.token_level:
        if extra_metrics:
            raise DataError("extra_metric applies to text tasks; a word tagger is scored by seqeval. Drop it.")
        return _tagging_scores(predictor, data, split)
    tokenized, texts = data.splits[split], data.texts[split]
    outputs = predictor.outputs(tokenized)  # first pass compiles; the timed pass below measures throughput
    sample = texts.select(range(min(len(texts), 5000)))
    pairs = list(sample["text_pair"]) if data.task.has_text_pair else None
    start = time.perf_counter()
    predictor.predict(list(sample["text"]), pairs)
    texts_per_s = len(sample) / (time.perf_counter() - start)

    labels = tokenized.text_labels()  # [T] ([T, L] label sets); outputs are per text too (windows averaged)
    if data.task.multi_label:
        if extra_metrics:
            raise DataError("extra_metric applies to single-label text tasks; drop it for a multi-label model.")
        metrics = _multilabel_scores(predictor, data.task, outputs, labels, split)
        metrics["predict_texts_per_s"] = texts_per_s
        return outputs, metrics
    metrics = {f"{split}_{k}": v for k, v in compute_metrics(data.task, outputs, labels, np.ones(len(labels))).items()}
    metrics[f"{split}_loss"] = mean_loss(data.task, outputs, labels)
    if not data.task.is_regression:  # with the model's temperature, and without (T = 1)
        found = calibration_metrics(outputs, labels, predictor.calibration.temperature)
        metrics.update({f"{split}_{k}": v for k, v in found.items()})
        metrics["temperature"] = predictor.calibration.temperature
    predictions = outputs[:, 0] if data.task.is_regression else outputs.argmax(-1)
    for name in extra_metrics:  # optional `evaluate` modules, by local path or hub id
        metrics.update({f"{split}_{k}": v for k, v in extra_metric(name, predictions, labels).items()})
    metrics["predict_texts_per_s"] = texts_per_s
    return outputs, metrics


def _multilabel_scores(predictor: Predictor, task, outputs: np.ndarray, labels: np.ndarray, split: str) -> dict:
    """A multi-label model scored as it answers: its per-label temperatures and tuned thresholds; ECE / Brier /
    NLL with and without the temperatures."""
    probs = predictor.probabilities(outputs)  # [T, L]
    predicted = multilabel.decide(probs, predictor.thresholds())
    found = multilabel.multilabel_metrics(predicted, labels, probs, task.per_class_labels())
    found.update(multilabel.calibration_metrics(outputs, labels, predictor.calibration.temperatures or None))
    metrics = {f"{split}_{k}": v for k, v in found.items()}
    metrics[f"{split}_loss"] = mean_loss(task, outputs, labels)
    return metrics


def _tables(
    predictor: Predictor, data: PreparedData, split: str, outputs: np.ndarray, top_mistakes: int, title: str
) -> dict:
    """Per-class metrics, precision-recall curves, the reliability diagram, the confusion matrix (or top
    confusions) and the most confident mistakes (by calibrated probability)."""
    texts, labels, names = data.texts[split], data.splits[split].text_labels(), data.task.label_names
    probs = predictor.probabilities(outputs)  # [T, C]
    predicted = probs.argmax(-1)
    pair_texts = list(texts["text_pair"]) if data.task.has_text_pair else None
    mistakes = most_confident_mistakes(probs, labels, names, list(texts["text"]), pair_texts, top_mistakes)
    return {
        "per_class_metrics.json": per_class_table(predicted, labels, names),
        **figures.confusion(labels, predicted, names, split, title=title),
        **figures.precision_recall_curves(probs, labels, names, split),
        **figures.reliability_diagram(outputs, labels, predictor.calibration.temperature, split),
        "most_confident_mistakes.json": mistakes,
    }
