"""Cleaning and deterministic splitting, reproducible by any tool with scikit-learn.

Rows with an empty text or a missing label are dropped (counted per split and reason; more than
`max_dropped_fraction` of a split is an error). When we must create validation/test ourselves, exact
duplicate texts are dropped first (keep the first; counted) so no text lands in two splits, then
`train_test_split(test_size=0.2, stratify=label, random_state=seed)` and the held-out 20% again with
`test_size=0.5` give 80/10/10. A source with train+test but no validation gets 10% of train as validation.
`calibration_fraction` then moves that share of train (after max_train_samples), stratified the same way, to a
calibration split.
"""

from __future__ import annotations

import dataclasses

import datasets
import numpy as np
from sklearn.model_selection import train_test_split

from bertcls.errors import DataError, setting


@dataclasses.dataclass
class CleaningStats:
    """Rows read and dropped per split and reason, duplicates dropped, and how splits were made."""

    rows_read: dict[str, int] = dataclasses.field(default_factory=dict)
    empty_text_dropped: dict[str, int] = dataclasses.field(default_factory=dict)  # missing text or text pair
    missing_label_dropped: dict[str, int] = dataclasses.field(default_factory=dict)  # text present, label missing
    duplicates_dropped: int = 0
    stratified: bool = True
    created_splits: tuple[str, ...] = ()

    def dropped(self, split: str) -> int:
        return self.empty_text_dropped.get(split, 0) + self.missing_label_dropped.get(split, 0)

    def dropped_summary(self) -> str:
        """One line per split that lost rows to a missing text or label; "" when none did."""
        return "; ".join(
            f"{split}: dropped {self.dropped(split)} of {rows} rows ({self.empty_text_dropped.get(split, 0)} "
            f"empty text, {self.missing_label_dropped.get(split, 0)} missing label)"
            for split, rows in self.rows_read.items()
            if self.dropped(split)
        )


def _is_empty(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip()


def _is_missing_label(value) -> bool:
    """None, NaN, or a blank string; 0, False and other values are labels."""
    if value is None:
        return True
    if isinstance(value, float):
        return bool(np.isnan(value))
    return isinstance(value, str) and not value.strip()


def _check_dropped_share(name: str, rows: int, stats: CleaningStats, label_column: str, max_fraction: float):
    dropped = stats.dropped(name)
    if rows and dropped / rows > max_fraction:
        raise DataError(
            f"{dropped} of the {rows} rows ({dropped / rows:.1%}) of the {name} split were dropped "
            f"({stats.empty_text_dropped[name]} with an empty text, {stats.missing_label_dropped[name]} without a "
            f"label in {label_column!r}), more than max_dropped_fraction={max_fraction:g} allows: the columns, "
            "delimiter or file are probably wrong. Fix the rows or the column names, or raise max_dropped_fraction to "
            f"train on the rest ({setting('max_dropped_fraction', 0.2)})."
        )


def drop_incomplete_rows(
    split: datasets.Dataset,
    name: str,
    text_columns: list[str],
    label_column: str,
    stats: CleaningStats,
    max_fraction: float,
) -> datasets.Dataset:
    """Drop rows with an empty text (or text pair) or a missing label; count each row once, text first.

    An error when every text or every label is missing, or when more than `max_fraction` of the rows go.
    `label_column` is the label's name in the source, for messages.
    """
    texts = [list(split[c]) for c in text_columns]
    has_text = [not any(_is_empty(v) for v in row) for row in zip(*texts, strict=True)]
    has_label = [not _is_missing_label(v) for v in split["label"]]
    keep = [i for i, (text, label) in enumerate(zip(has_text, has_label, strict=True)) if text and label]
    stats.rows_read[name] = len(split)
    stats.empty_text_dropped[name] = has_text.count(False)
    stats.missing_label_dropped[name] = len(split) - len(keep) - stats.empty_text_dropped[name]
    if len(split) and not any(has_text):
        raise DataError(
            f"Every row of the {name} split has an empty text in {', '.join(text_columns)} ({len(split)} rows). "
            "Check text_column / text_pair_column: they probably name the wrong columns."
        )
    if len(split) and not any(has_label):
        raise DataError(
            f"Every row of the {name} split has a missing label in {label_column!r} ({len(split)} rows). "
            "Check label_column: it probably names the wrong column."
        )
    _check_dropped_share(name, len(split), stats, label_column, max_fraction)
    return split.select(keep) if len(keep) < len(split) else split


def drop_duplicate_texts(split: datasets.Dataset, text_columns: list[str], stats: CleaningStats):
    """Keep the first of each exact duplicate text (or text pair)."""
    seen: set = set()
    keep = []
    for i, key in enumerate(zip(*(list(split[c]) for c in text_columns), strict=True)):
        if key not in seen:
            seen.add(key)
            keep.append(i)
    stats.duplicates_dropped = len(split) - len(keep)
    return split.select(keep) if stats.duplicates_dropped else split


def split_indices(n: int, labels, test_size: float, seed: int, stats: CleaningStats):
    indices = np.arange(n)
    try:
        return train_test_split(indices, test_size=test_size, stratify=labels, random_state=seed)
    except ValueError:  # a class with a single member cannot be stratified
        stats.stratified = False
        return train_test_split(indices, test_size=test_size, random_state=seed)


def make_splits(
    splits: datasets.DatasetDict, labels_for_stratify, seed: int, stats: CleaningStats
) -> datasets.DatasetDict:
    """Add the validation (and test) split a source lacks, from a train split without duplicate texts."""
    if "validation" in splits:
        return splits
    train = splits["train"]
    strat = labels_for_stratify(train) if labels_for_stratify else None
    stats.stratified = strat is not None
    if len(train) < 10:
        raise DataError(
            f"Only {len(train)} usable training rows: too few to split "
            f"{'off a validation set' if 'test' in splits else '80/10/10'}. Provide more data or validation_file"
            f"{'' if 'test' in splits else ' / test_file'}."
        )
    if "test" in splits:
        keep, held = split_indices(len(train), strat, 0.1, seed, stats)
        stats.created_splits = ("validation",)
        return datasets.DatasetDict(train=train.select(keep), validation=train.select(held), test=splits["test"])
    keep, held = split_indices(len(train), strat, 0.2, seed, stats)
    held_strat = None if strat is None or not stats.stratified else np.asarray(strat)[held]
    val_pos, test_pos = split_indices(len(held), held_strat, 0.5, seed, stats)
    stats.created_splits = ("validation", "test")
    return datasets.DatasetDict(
        train=train.select(keep),
        validation=train.select(held[val_pos]),
        test=train.select(held[test_pos]),
    )


def hold_out_calibration(
    splits: datasets.DatasetDict, labels_for_stratify, fraction: float, seed: int, stats: CleaningStats
) -> datasets.DatasetDict:
    """Move `fraction` of the training rows (stratified when the labels allow, `seed`) to a `calibration` split,
    on which the temperature is fitted instead of on validation; 0 leaves the splits as they are."""
    if not fraction:
        return splits
    train = splits["train"]
    held_rows = int(round(fraction * len(train)))
    if held_rows < 1 or held_rows >= len(train):
        raise DataError(
            f"calibration_fraction={fraction:g} of the {len(train)} training rows is {held_rows} rows, which leaves "
            "no calibration split or no training split. Use a fraction such as 0.1 with more training data, or "
            "calibration_fraction=0 to fit the temperature on the validation split."
        )
    strat = labels_for_stratify(train) if labels_for_stratify else None
    keep, held = split_indices(len(train), strat, held_rows, seed, stats)
    stats.created_splits = (*stats.created_splits, "calibration")
    return datasets.DatasetDict({**splits, "train": train.select(keep), "calibration": train.select(held)})


def cap_samples(splits: datasets.DatasetDict, config) -> datasets.DatasetDict:
    """The first max_train_samples of train and max_eval_samples of validation and test (a DataConfig's caps)."""
    if config.max_train_samples:
        splits["train"] = splits["train"].select(range(min(config.max_train_samples, len(splits["train"]))))
    if config.max_eval_samples:
        for name in ("validation", "test"):
            if name in splits:
                splits[name] = splits[name].select(range(min(config.max_eval_samples, len(splits[name]))))
    return splits
