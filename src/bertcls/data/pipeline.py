"""One call from a DataConfig and a tokenizer to tokenized train/validation/test arrays and a TaskSpec."""

from __future__ import annotations

import logging

import datasets
import numpy as np

from bertcls.config import DataConfig
from bertcls.data import multilabel, tagging
from bertcls.data.batching import TokenizedSplit, fit_buckets
from bertcls.data.prepared import PreparedData
from bertcls.data.sources import GLUE, RawSource, load_source
from bertcls.data.splits import (
    CleaningStats,
    cap_samples,
    drop_duplicate_texts,
    drop_incomplete_rows,
    hold_out_calibration,
    make_splits,
)
from bertcls.data.tasks import MULTI_LABEL_PRIMARY_METRIC, TaskSpec, label_name, primary_metric_for
from bertcls.data.tokenize import padded_matrix, tokenize_split, tokenizer_fingerprint
from bertcls.errors import DataError

log = logging.getLogger(__name__)


def _describe(feature) -> str:
    """A column's value type in words: int64, string, list, dict, mixed-type JSON, ..."""
    if isinstance(feature, datasets.Value):
        return feature.dtype
    name = type(feature).__name__
    return "mixed-type JSON" if name == "Json" else name.lower()


def as_text(split: datasets.Dataset, column: str, name: str, original: str) -> datasets.Dataset:
    """The column as strings (numbers and booleans become their text); an error for lists, dicts and the like."""
    feature = split.features[column]
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        return split
    problem = f"Column {original!r} of the {name} split holds {_describe(feature)} values, not text."
    if not isinstance(feature, datasets.Value):
        raise DataError(f"{problem} Set text_column / text_pair_column to a column of strings.")
    try:
        return split.cast_column(column, datasets.Value("string"))
    except (ValueError, TypeError, NotImplementedError) as err:
        raise DataError(
            f"{problem} They cannot be read as text ({(str(err).splitlines() or [type(err).__name__])[0][:160]}). "
            "Set text_column / text_pair_column to a column of strings."
        ) from None


_LABEL_DTYPES = ("string", "large_string", "bool", "null", "int", "uint", "float")


def _check_label_type(split: datasets.Dataset, name: str, original: str) -> None:
    """Labels are strings, booleans, numbers (or all missing); a ClassLabel brings its own names."""
    feature = split.features["label"]
    if isinstance(feature, datasets.ClassLabel):
        return
    if isinstance(feature, datasets.Value) and feature.dtype.rstrip("0123456789") in _LABEL_DTYPES:
        return
    raise DataError(
        f"The label column {original!r} of the {name} split holds {_describe(feature)} values; labels must be "
        "strings, whole numbers or (for regression) numbers, one type per column. Set label_column to such a "
        "column, or fix its values."
    )


def _standardize(source: RawSource) -> datasets.DatasetDict:
    """Rename the source's columns to text / text_pair / label, with a clear error for unknown ones."""
    named = [c for c in (source.text_column, source.text_pair_column, source.label_column) if c]
    if len(set(named)) < len(named):
        raise DataError(
            f"text_column, text_pair_column and label_column must name different columns; got "
            f"{', '.join(repr(c) for c in named)}. Set each to its own column."
        )
    wanted = {source.text_column: "text", source.label_column: "label"}
    if source.text_pair_column:
        wanted[source.text_pair_column] = "text_pair"
    out = {}
    for name, split in source.splits.items():
        missing = [c for c in wanted if c not in split.column_names]
        if missing:
            semicolons = len(split.column_names) == 1 and ";" in split.column_names[0]
            hint = (
                " The file looks semicolon-separated (its one column is named with ';' in it): .csv files are read "
                "with commas and .tsv with tabs. Re-save it with commas (e.g. pandas: pd.read_csv(path, sep=';')"
                ".to_csv('data.csv', index=False)) or with tabs as .tsv."
                if semicolons
                else " Set text_column / text_pair_column / label_column to one of them."
            )
            raise DataError(
                f"{'Columns' if len(missing) > 1 else 'Column'} {', '.join(repr(c) for c in missing)} not found in "
                f"the {name} split of {source.name}. "
                f"Columns that exist: {', '.join(split.column_names)}.{hint}"
            )
        split = split.select_columns(list(wanted)).rename_columns({k: v for k, v in wanted.items() if k != v})
        for original, column in wanted.items():
            if column != "label":
                split = as_text(split, column, name, original)
        if source.label_column != multilabel.LABEL_SETS:  # label sets were checked as they were read
            _check_label_type(split, name, source.label_column)
        out[name] = split
    return datasets.DatasetDict(out)


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_finite_labels(split: datasets.Dataset, name: str, original: str) -> None:
    """Numeric labels must be finite float32 values (regression targets are float32 arrays)."""
    bad = sum(1 for v in split["label"] if isinstance(v, float) and not abs(v) <= _FLOAT32_MAX)
    if bad:
        raise DataError(
            f"The {name} split has {bad} infinite or out-of-range value(s) (beyond ±3.4e38) in the label column "
            f"{original!r}. Fix or remove those rows."
        )


def _is_regression(source: RawSource, labels: list) -> bool:
    if source.glue_task:
        return GLUE[source.glue_task][2]
    if source.label_names is not None:
        return False
    return bool(labels) and all(isinstance(v, float) for v in labels) and not all(v.is_integer() for v in labels)


def _label_names(source: RawSource, train_labels: list) -> tuple[str, ...]:
    """Sorted distinct train labels by value (whole-number floats as ints), named by `label_name`."""
    if source.label_names is not None:
        return source.label_names
    distinct = {int(v) if isinstance(v, float) else v for v in train_labels}
    return tuple(label_name(v) for v in sorted(distinct, key=lambda v: (str(type(v)), v)))


def _encode_labels(split: datasets.Dataset, name: str, task: TaskSpec, from_class_label: bool) -> np.ndarray:
    raw = list(split["label"])
    if task.multi_label:
        return multilabel.multi_hot(raw, task.label_names, name)  # [N, L]
    if task.is_regression:
        return np.asarray(raw, dtype=np.float32)
    if from_class_label:
        ids = np.asarray(raw, dtype=np.int32)
        if ids.size and (ids.min() < 0 or ids.max() >= task.num_labels):
            raise DataError(f"The {name} split has label ids outside 0..{task.num_labels - 1}.")
        return ids
    index = {label: i for i, label in enumerate(task.label_names)}
    unseen = sorted({label_name(v) for v in raw} - index.keys())
    if unseen:
        raise DataError(
            f"The {name} split has labels never seen in train: {', '.join(unseen[:10])}. Train labels: "
            f"{', '.join(task.label_names)}. Fix the labels, or put examples of these classes in train."
        )
    return np.asarray([index[label_name(v)] for v in raw], dtype=np.int32)


def _unlabelled(split: datasets.Dataset, source: RawSource) -> bool:
    """GLUE-style hidden test labels (-1 everywhere)."""
    return source.label_names is not None and len(split) > 0 and all(v == -1 for v in split["label"])


def _clean(
    splits: datasets.DatasetDict, source: RawSource, text_columns: list[str], max_dropped_fraction: float
) -> tuple[datasets.DatasetDict, CleaningStats]:
    """Drop rows without text or label (counted, share checked), check label values, drop duplicate texts
    of train when we make the held-out splits (so no text is in two splits)."""
    stats = CleaningStats()
    splits = datasets.DatasetDict(
        {
            name: drop_incomplete_rows(split, name, text_columns, source.label_column, stats, max_dropped_fraction)
            for name, split in splits.items()
        }
    )
    if stats.dropped_summary():
        log.warning("%s: rows without text or label dropped: %s", source.name, stats.dropped_summary())
    for name, split in splits.items():
        _check_finite_labels(split, name, source.label_column)
    if "validation" not in splits:
        splits["train"] = drop_duplicate_texts(splits["train"], text_columns, stats)
    return splits, stats


def _task_for(source: RawSource, train_labels: list, has_text_pair: bool) -> TaskSpec:
    """Classification (named classes, at least two), multi-label (label sets over at least two labels) or
    regression, from the cleaned train labels."""
    if source.label_column == multilabel.LABEL_SETS:
        names = multilabel.label_set_names(train_labels, source.label_names)
        if len(names) < 2:
            raise DataError(
                f"The train split of {source.name} names {len(names)} label(s) ({', '.join(names) or 'none'}); "
                "multi-label classification needs at least two. A single yes/no label is a text classifier: use "
                "task=text with a 0/1 label column."
            )
        return TaskSpec(source.name, names, False, MULTI_LABEL_PRIMARY_METRIC, has_text_pair, multi_label=True)
    is_regression = _is_regression(source, train_labels)
    task = TaskSpec(
        name=source.name,
        label_names=() if is_regression else _label_names(source, train_labels),
        is_regression=is_regression,
        primary_metric=primary_metric_for(source.glue_task, is_regression),
        has_text_pair=has_text_pair,
    )
    if not is_regression and task.num_labels < 2:
        raise DataError(
            f"The train split of {source.name} has a single class ({task.label_names[0]!r}); a classifier "
            "needs at least two. Check label_column, or add examples of the other classes."
        )
    return task


def split_texts(
    config: DataConfig, source: RawSource | None = None
) -> tuple[RawSource, datasets.DatasetDict, TaskSpec, CleaningStats]:
    """Load, clean and split as the classifier sees its data (text, text_pair, label); no tokenization yet."""
    source = source or load_source(config)
    if multilabel.is_multilabel(source, config):
        source = multilabel.normalize(source, config)
    splits = _standardize(source)
    if "test" in splits and _unlabelled(splits["test"], source):
        log.info("dropping the test split of %s: its labels are hidden", source.name)
        del splits["test"]
    for name, split in splits.items():
        if len(split) == 0:
            raise DataError(f"The {name} split of {source.name} is empty. Point at a file or dataset with examples.")

    text_columns = ["text", "text_pair"] if "text_pair" in splits["train"].column_names else ["text"]
    splits, stats = _clean(splits, source, text_columns, config.max_dropped_fraction)
    task = _task_for(source, list(splits["train"]["label"]), has_text_pair=len(text_columns) == 2)
    stratify = None if task.is_regression or task.multi_label else (lambda s: [label_name(v) for v in s["label"]])
    splits = make_splits(splits, stratify, config.split_seed, stats)
    if config.calibration_fraction and task.is_regression:
        raise DataError(
            f"calibration_fraction holds out texts to calibrate class probabilities, but {source.name} has numeric "
            "labels (regression), which have none. Drop calibration_fraction."
        )
    # After the caps: with max_train_samples=400 and calibration_fraction=0.2, 320 texts train and 80 calibrate.
    splits = hold_out_calibration(
        cap_samples(splits, config), stratify, config.calibration_fraction, config.split_seed, stats
    )
    return source, splits, task, stats


def prepare_data(config: DataConfig, tokenizer) -> PreparedData:
    """Load, clean, split, encode labels and tokenize; see docs/data.md for the exact recipe (word tagging:
    `data.tagging`, docs/token-classification.md)."""
    source = load_source(config)
    columns = tagging.tagging_columns(source, config)
    if columns is not None:
        if config.calibration_fraction:
            raise DataError(
                f"calibration_fraction applies to texts with one label or a label set, but {source.name} tags "
                "words, whose probabilities are not calibrated. Drop calibration_fraction."
            )
        return tagging.prepare_tagging(config, tokenizer, source, columns)
    if config.tag_decoding != "viterbi":
        raise DataError(
            f"tag_decoding applies to word tagging, but {source.name} holds texts with labels. Drop it, or point at "
            "tagged data (CoNLL files, or tokens / tags list columns)."
        )
    if config.label_all_tokens:
        raise DataError(
            f"label_all_tokens applies to word tagging, but {source.name} holds texts with one label each. Drop it, "
            "or point at tagged data (CoNLL files, or tokens / tags list columns)."
        )
    source, splits, task, stats = split_texts(config, source)
    from_class_label = source.label_names is not None and not task.multi_label
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
        labels = _encode_labels(split, name, task, from_class_label)
        arrays[name] = TokenizedSplit(
            input_ids=padded_matrix(tokenized["input_ids"], config.max_seq_length),
            token_type_ids=padded_matrix(tokenized["token_type_ids"], config.max_seq_length),
            lengths=np.asarray(tokenized["length"], dtype=np.int32),
            labels=labels[documents],
            documents=documents if windows else None,
        )
    buckets = fit_buckets(arrays["train"].lengths, config.max_seq_length, config.max_buckets, config.bucket_multiple)
    return PreparedData(task, arrays, buckets, dict(splits), stats, source)


FEW_EXAMPLES = 5  # fewer training examples than this cannot teach a class (nor be split fairly)


def class_warnings(data: PreparedData) -> list[str]:
    """What a user should know about the classes before trusting the figures: classes with fewer than
    FEW_EXAMPLES training texts, and classes with no validation text (their recall there is undefined)."""
    if data.task.is_regression:
        return []
    if data.task.token_level:
        return tagging.tag_warnings(data)
    names, count = data.task.label_names, data.task.num_labels
    if data.task.multi_label:  # texts with each label
        train = data.splits["train"].text_labels().sum(axis=0).astype(int)
        validation = data.splits["validation"].text_labels().sum(axis=0).astype(int)
    else:
        train = np.bincount(data.splits["train"].text_labels().astype(int), minlength=count)
        validation = np.bincount(data.splits["validation"].text_labels().astype(int), minlength=count)
    found = []
    few = [f"{names[i]} ({train[i]})" for i in np.flatnonzero(train < FEW_EXAMPLES)]
    if few:
        found.append(
            f"{len(few)} of {count} classes have fewer than {FEW_EXAMPLES} training texts: "
            f"{', '.join(few[:20])}{' ...' if len(few) > 20 else ''}"
        )
    missing = [names[i] for i in np.flatnonzero(validation == 0)]
    if missing:
        found.append(
            f"{len(missing)} of {count} classes have no validation text: "
            f"{', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}"
        )
    return found
