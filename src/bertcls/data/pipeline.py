"""One call from a DataConfig and a tokenizer to tokenized train/validation/test arrays and a TaskSpec."""

from __future__ import annotations

import dataclasses
import logging

import datasets
import numpy as np

from bertcls.config import DataConfig
from bertcls.data.batching import TokenizedSplit, fit_buckets
from bertcls.data.sources import GLUE, RawSource, load_source
from bertcls.data.splits import CleaningStats, drop_empty_texts, make_splits
from bertcls.data.tasks import TaskSpec, primary_metric_for
from bertcls.data.tokenize import padded_matrix, tokenize_split, tokenizer_fingerprint
from bertcls.errors import DataError

log = logging.getLogger(__name__)


@dataclasses.dataclass
class PreparedData:
    task: TaskSpec
    splits: dict[str, TokenizedSplit]  # train, validation, and test when it has labels
    buckets: tuple[int, ...]  # padded lengths a batch may have, fitted to the train lengths
    texts: dict[str, datasets.Dataset]  # the same rows as text/text_pair/label (for reports, digests)
    stats: CleaningStats
    source: RawSource


def _standardize(source: RawSource) -> datasets.DatasetDict:
    """Rename the source's columns to text / text_pair / label, with a clear error for unknown ones."""
    wanted = {source.text_column: "text", source.label_column: "label"}
    if source.text_pair_column:
        wanted[source.text_pair_column] = "text_pair"
    out = {}
    for name, split in source.splits.items():
        missing = [c for c in wanted if c not in split.column_names]
        if missing:
            raise DataError(
                f"Column {', '.join(repr(c) for c in missing)} not found in the {name} split of {source.name}. "
                f"Columns that exist: {', '.join(split.column_names)}. Set text_column / text_pair_column / "
                "label_column to one of them."
            )
        split = split.select_columns(list(wanted)).rename_columns({k: v for k, v in wanted.items() if k != v})
        out[name] = split
    return datasets.DatasetDict(out)


def _is_regression(source: RawSource, labels: list) -> bool:
    if source.glue_task:
        return GLUE[source.glue_task][2]
    if source.label_names is not None:
        return False
    values = [v for v in labels if v is not None]
    return bool(values) and all(isinstance(v, float) for v in values) and any(v != int(v) for v in values)


def _label_names(source: RawSource, train_labels: list) -> tuple[str, ...]:
    if source.label_names is not None:
        return source.label_names
    distinct = set(train_labels)
    return tuple(str(v) for v in sorted(distinct, key=lambda v: (str(type(v)), v)))


def _encode_labels(split: datasets.Dataset, name: str, task: TaskSpec, from_class_label: bool) -> np.ndarray:
    raw = list(split["label"])
    if task.is_regression:
        return np.asarray(raw, dtype=np.float32)
    if from_class_label:
        ids = np.asarray(raw, dtype=np.int32)
        if ids.size and (ids.min() < 0 or ids.max() >= task.num_labels):
            raise DataError(f"The {name} split has label ids outside 0..{task.num_labels - 1}.")
        return ids
    index = {label: i for i, label in enumerate(task.label_names)}
    unseen = sorted({str(v) for v in raw} - index.keys())
    if unseen:
        raise DataError(
            f"The {name} split has labels never seen in train: {', '.join(unseen[:10])}. Train labels: "
            f"{', '.join(task.label_names)}. Fix the labels, or put examples of these classes in train."
        )
    return np.asarray([index[str(v)] for v in raw], dtype=np.int32)


def _unlabelled(split: datasets.Dataset, source: RawSource) -> bool:
    """GLUE-style hidden test labels (-1 everywhere)."""
    return source.label_names is not None and len(split) > 0 and all(v == -1 for v in split["label"])


def prepare_data(config: DataConfig, tokenizer) -> PreparedData:
    """Load, clean, split, encode labels and tokenize; see docs/data.md for the exact recipe."""
    source = load_source(config)
    splits = _standardize(source)
    if "test" in splits and _unlabelled(splits["test"], source):
        log.info("dropping the test split of %s: its labels are hidden", source.name)
        del splits["test"]
    if len(splits["train"]) == 0:
        raise DataError(f"The train split of {source.name} is empty. Point at a file or dataset with examples.")

    text_columns = ["text", "text_pair"] if "text_pair" in splits["train"].column_names else ["text"]
    stats = CleaningStats()
    splits = datasets.DatasetDict(
        {name: drop_empty_texts(split, name, text_columns, stats) for name, split in splits.items()}
    )
    train_labels = list(splits["train"]["label"])
    is_regression = _is_regression(source, train_labels)
    task = TaskSpec(
        name=source.name,
        label_names=() if is_regression else _label_names(source, train_labels),
        is_regression=is_regression,
        primary_metric=primary_metric_for(source.glue_task, is_regression),
        has_text_pair=len(text_columns) == 2,
    )
    if not is_regression and task.num_labels < 2:
        raise DataError(
            f"The train split of {source.name} has a single class ({task.label_names[0]!r}); a classifier "
            "needs at least two. Check label_column, or add examples of the other classes."
        )
    stratify = None if is_regression else (lambda split: [str(v) for v in split["label"]])
    splits = make_splits(splits, text_columns, stratify, config.split_seed, stats)
    if config.max_train_samples:
        splits["train"] = splits["train"].select(range(min(config.max_train_samples, len(splits["train"]))))
    if config.max_eval_samples:
        for name in ("validation", "test"):
            if name in splits:
                splits[name] = splits[name].select(range(min(config.max_eval_samples, len(splits[name]))))

    if config.windowed and task.has_text_pair:
        raise DataError(
            f"{source.name} is a text-pair task; long_text=windows cuts single texts only. Use long_text=truncate "
            "(pairs are truncated longest-first to max_seq_length)."
        )
    windows = (config.window_overlap, config.max_windows) if config.windowed else None
    tokenizer_hash = tokenizer_fingerprint(tokenizer)
    arrays = {}
    for name, split in splits.items():
        tokenized = tokenize_split(split, tokenizer, config.max_seq_length, task.has_text_pair, tokenizer_hash, windows)
        documents = np.asarray(tokenized["document"], dtype=np.int32)  # [N] text of each row
        labels = _encode_labels(split, name, task, source.label_names is not None)
        arrays[name] = TokenizedSplit(
            input_ids=padded_matrix(tokenized["input_ids"], config.max_seq_length),
            token_type_ids=padded_matrix(tokenized["token_type_ids"], config.max_seq_length),
            lengths=np.asarray(tokenized["length"], dtype=np.int32),
            labels=labels[documents],
            documents=documents if windows else None,
        )
    buckets = fit_buckets(arrays["train"].lengths, config.max_seq_length, config.max_buckets, config.bucket_multiple)
    return PreparedData(task, arrays, buckets, dict(splits), stats, source)
