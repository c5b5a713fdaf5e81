"""Multi-label data: a set of labels per text, from a column of lists, of delimited strings, or one 0/1 column per
label. Every form becomes one column of label-name lists (`LABEL_SETS`), then a [N, L] multi-hot matrix.

An empty list, an empty delimited cell and a missing cell are all the empty set: a valid answer ("none of these").
"""

from __future__ import annotations

import dataclasses
import re

import datasets
import numpy as np

from bertcls.config import DataConfig
from bertcls.data.sources import RawSource
from bertcls.data.tasks import label_name
from bertcls.errors import DataError, setting

LABEL_SETS = "__label_set__"  # the column the normalised label lists live in until the pipeline renames it
_LIST_FEATURES = (datasets.Sequence, datasets.List, datasets.LargeList, list)


def _is_list_feature(feature) -> bool:
    return isinstance(feature, _LIST_FEATURES)


def is_multilabel(source: RawSource, config: DataConfig) -> bool:
    """task=multilabel, label_delimiter or label_columns, or (task=auto) a label column holding lists."""
    if config.task == "multilabel" or config.label_delimiter or config.label_columns:
        return True
    if config.task != "auto":
        return False
    return _is_list_feature(source.splits["train"].features.get(source.label_column))


def column_names(spec: str) -> tuple[str, ...]:
    """`label_columns` as a tuple: names separated by spaces or commas."""
    return tuple(name for name in re.split(r"[\s,]+", spec.strip()) if name)


_TRUE, _FALSE = {1, "1", "true", "True"}, {0, "0", "false", "False"}


def _from_columns(split: datasets.Dataset, split_name: str, names: tuple[str, ...], where: str) -> list[list[str]]:
    missing = [n for n in names if n not in split.column_names]
    if missing:
        raise DataError(
            f"label_columns names {', '.join(repr(n) for n in missing)}, not found in the {split_name} split of "
            f"{where}. Columns that exist: {', '.join(split.column_names)}. Name one 0/1 column per label."
        )
    sets: list[list[str]] = [[] for _ in range(len(split))]
    for name in names:
        for row, value in enumerate(split[name]):
            if value in _TRUE:
                sets[row].append(name)
            elif value not in _FALSE:
                raise DataError(
                    f"label_columns: column {name!r} of the {split_name} split of {where} holds {value!r} in row "
                    f"{row + 1}; a label column holds 0 or 1 (or true / false) in every row. Fix the value, or "
                    "leave that column out of label_columns."
                )
    return sets


def _from_delimited(values: list, delimiter: str) -> list[list[str]]:
    out = []
    for value in values:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            out.append([])
        else:
            out.append([part.strip() for part in str(value).split(delimiter) if part.strip()])
    return out


def _from_lists(values: list, feature, split_name: str, where: str, column: str) -> list[list[str]]:
    inner = getattr(feature, "feature", None)
    names = inner.names if isinstance(inner, datasets.ClassLabel) else None  # ids of a ClassLabel sequence
    out = []
    for row, value in enumerate(values):
        if value is None:
            out.append([])
            continue
        if not isinstance(value, list | tuple):
            raise DataError(
                f"The label column {column!r} of the {split_name} split of {where} holds {value!r} in row {row + 1}, "
                f"not a list of labels. Write every row's labels as a list (an empty list for none), or give "
                f"{setting('label_delimiter', ',')} for delimited strings."
            )
        out.append([names[v] if names else label_name(v) for v in value])
    return out


def normalize(source: RawSource, config: DataConfig) -> RawSource:
    """The source with its labels as lists of label names in column LABEL_SETS (and, from label_columns or a
    ClassLabel sequence, the label names in their order)."""
    label_names = source.label_names
    out = {}
    for split_name, split in source.splits.items():
        where = (source.files or {}).get(split_name, source.name)
        if config.label_columns:
            names = column_names(config.label_columns)
            sets = _from_columns(split, split_name, names, where)
            label_names = names
        else:
            if source.label_column not in split.column_names:
                raise DataError(
                    f"Column {source.label_column!r} not found in the {split_name} split of {source.name}. Columns "
                    f"that exist: {', '.join(split.column_names)}. Set label_column to the column of label lists, "
                    "or label_columns to one 0/1 column per label."
                )
            feature = split.features[source.label_column]
            values = list(split[source.label_column])
            if config.label_delimiter:
                sets = _from_delimited(values, config.label_delimiter)
            else:
                sets = _from_lists(values, feature, split_name, where, source.label_column)
                inner = getattr(feature, "feature", None)
                if isinstance(inner, datasets.ClassLabel):
                    label_names = tuple(inner.names)
        sets = [sorted(set(s), key=s.index) for s in sets]  # a label named twice in a row counts once
        split = split.add_column(LABEL_SETS, sets, feature=datasets.List(datasets.Value("string")))
        out[split_name] = split
    return dataclasses.replace(
        source, splits=datasets.DatasetDict(out), label_column=LABEL_SETS, label_names=label_names
    )


def label_set_names(train_sets: list[list[str]], given: tuple[str, ...] | None) -> tuple[str, ...]:
    """The labels in id order: as given (label_columns, a ClassLabel, a bundled list), else the training labels
    sorted."""
    if given is not None:
        return tuple(given)
    return tuple(sorted({label for labels in train_sets for label in labels}))


def multi_hot(sets: list[list[str]], names: tuple[str, ...], split_name: str) -> np.ndarray:
    """[N, L] float32, 1 where the row has the label; a label not among `names` is a DataError naming it."""
    index = {name: i for i, name in enumerate(names)}
    out = np.zeros((len(sets), len(names)), dtype=np.float32)
    unknown: dict[str, int] = {}
    for row, labels in enumerate(sets):
        for label in labels:
            if label in index:
                out[row, index[label]] = 1.0
            else:
                unknown.setdefault(label, row + 1)
    if unknown:
        found = ", ".join(f"{label!r} (first in row {row})" for label, row in list(unknown.items())[:10])
        raise DataError(
            f"The {split_name} split has labels never seen in training: {found}. Training labels: "
            f"{', '.join(names[:40])}{' ...' if len(names) > 40 else ''}. Fix the labels, or put examples of them "
            "in the training split."
        )
    return out
