"""Word-tagging metrics: entity precision / recall / F1 as seqeval computes them (its default, conlleval-compatible
mode, micro-averaged: what Hugging Face's run_ner.py reports), per entity type, and word accuracy.

Inputs are flat over words ([W] ids, sentences in order) with `word_counts` [T] marking the sentences.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from bertcls.data.tags import decode_tags, prefixed
from bertcls.data.tasks import TaskSpec


def predicted_tags(task: TaskSpec, outputs: np.ndarray, word_counts: np.ndarray) -> np.ndarray:
    """[W] tag ids from [W, C] word logits as the task decodes them (viterbi: the most probable sequence its tag
    scheme allows; argmax: each word's most probable tag): what the metrics score and the model serves."""
    return decode_tags(outputs, word_counts, task.label_names, task.tag_scheme, task.tag_decoding)


def as_sentences(ids: np.ndarray, word_counts: np.ndarray, names: Sequence[str]) -> list[list[str]]:
    """[W] tag ids -> one list of tag names per sentence."""
    bounds = np.cumsum(word_counts)[:-1]
    return [[names[i] for i in sentence] for sentence in np.split(np.asarray(ids), bounds)]


def _seqeval_sentences(task: TaskSpec, predicted: np.ndarray, labels: np.ndarray, word_counts: np.ndarray):
    """(truth, guess) tag sentences as seqeval reads them: prefixes spelled out (IO's `PER` as `I-PER`)."""
    names = [prefixed(name) for name in task.label_names]
    return as_sentences(labels, word_counts, names), as_sentences(predicted, word_counts, names)


def tagging_metrics(task: TaskSpec, predicted: np.ndarray, labels: np.ndarray, word_counts: np.ndarray) -> dict:
    """precision, recall, f1 (entities, micro) and accuracy (words); accuracy only for tags that spell no
    entities (POS tags)."""
    out = {"accuracy": float(np.mean(predicted == labels)) if len(labels) else 0.0}
    if task.primary_metric != "f1":
        return out
    from seqeval import metrics

    truth, guess = _seqeval_sentences(task, predicted, labels, word_counts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no predicted (or no true) entity: seqeval warns and scores 0
        return {
            "precision": float(metrics.precision_score(truth, guess)),
            "recall": float(metrics.recall_score(truth, guess)),
            "f1": float(metrics.f1_score(truth, guess)),
            **out,
        }


def entity_type_table(task: TaskSpec, predicted: np.ndarray, labels: np.ndarray, word_counts: np.ndarray):
    """Precision, recall, F1 and support (true entities) per entity type, then the micro average (a DataFrame)."""
    import pandas as pd
    from seqeval import metrics

    truth, guess = _seqeval_sentences(task, predicted, labels, word_counts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = metrics.classification_report(truth, guess, output_dict=True, zero_division=0)
    rows = [
        {"type": name, **{k: report[name][k] for k in ("precision", "recall", "f1-score", "support")}}
        for name in sorted(k for k in report if not k.endswith(" avg"))
    ]
    rows.append(
        {"type": "micro avg", **{k: report["micro avg"][k] for k in ("precision", "recall", "f1-score", "support")}}
    )
    table = pd.DataFrame(rows).rename(columns={"f1-score": "f1"})
    table["support"] = table["support"].astype(int)
    return table


def word_loss(logits: np.ndarray, labels: np.ndarray, scored: np.ndarray) -> float:
    """Mean cross-entropy of the words the model predicted ([W, C] logits, [W] tags, [W] bool), in float64."""
    logits, labels = np.asarray(logits, np.float64)[scored], np.asarray(labels)[scored]
    if len(labels) == 0:
        return float("nan")
    top = logits.max(axis=-1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(logits - top).sum(axis=-1))
    return float(np.mean(log_norm - logits[np.arange(len(labels)), labels]))
