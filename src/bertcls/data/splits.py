"""Cleaning and deterministic splitting, reproducible by any tool with scikit-learn.

Rows with empty text are dropped (counted). When we must create validation/test ourselves, exact
duplicate texts are dropped first (keep the first; counted) so no text lands in two splits, then
`train_test_split(test_size=0.2, stratify=label, random_state=seed)` and the held-out 20% again with
`test_size=0.5` give 80/10/10. A source with train+test but no validation gets 10% of train as validation.
"""

from __future__ import annotations

import dataclasses

import datasets
import numpy as np
from sklearn.model_selection import train_test_split

from bertcls.errors import DataError


@dataclasses.dataclass
class CleaningStats:
    empty_text_dropped: dict[str, int] = dataclasses.field(default_factory=dict)
    duplicates_dropped: int = 0
    stratified: bool = True
    created_splits: tuple[str, ...] = ()


def _is_empty(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip()


def drop_empty_texts(split: datasets.Dataset, name: str, text_columns: list[str], stats: CleaningStats):
    """Drop rows whose text (or text pair) is missing or blank; an error when nothing is left."""
    columns = [list(split[c]) for c in text_columns]
    keep = [i for i, row in enumerate(zip(*columns, strict=True)) if not any(_is_empty(v) for v in row)]
    dropped = len(split) - len(keep)
    stats.empty_text_dropped[name] = dropped
    if len(split) and not keep:
        raise DataError(
            f"Every row of the {name} split has an empty text in {', '.join(text_columns)} ({dropped} rows). "
            "Check text_column / text_pair_column: they probably name the wrong columns."
        )
    return split.select(keep) if dropped else split


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


def _split_indices(n: int, labels, test_size: float, seed: int, stats: CleaningStats):
    indices = np.arange(n)
    try:
        return train_test_split(indices, test_size=test_size, stratify=labels, random_state=seed)
    except ValueError:  # a class with a single member cannot be stratified
        stats.stratified = False
        return train_test_split(indices, test_size=test_size, random_state=seed)


def make_splits(
    splits: datasets.DatasetDict, text_columns: list[str], labels_for_stratify, seed: int, stats: CleaningStats
) -> datasets.DatasetDict:
    """Add the validation (and test) split a source lacks; see the module docstring for the recipe."""
    if "validation" in splits:
        return splits
    train = drop_duplicate_texts(splits["train"], text_columns, stats)
    strat = labels_for_stratify(train) if labels_for_stratify else None
    stats.stratified = strat is not None
    if "test" in splits:
        keep, held = _split_indices(len(train), strat, 0.1, seed, stats)
        stats.created_splits = ("validation",)
        return datasets.DatasetDict(train=train.select(keep), validation=train.select(held), test=splits["test"])
    if len(train) < 10:
        raise DataError(
            f"Only {len(train)} usable training rows: too few to split 80/10/10. Provide more data or "
            "validation_file / test_file."
        )
    keep, held = _split_indices(len(train), strat, 0.2, seed, stats)
    held_strat = None if strat is None or not stats.stratified else np.asarray(strat)[held]
    val_pos, test_pos = _split_indices(len(held), held_strat, 0.5, seed, stats)
    stats.created_splits = ("validation", "test")
    return datasets.DatasetDict(
        train=train.select(keep),
        validation=train.select(held[val_pos]),
        test=train.select(held[test_pos]),
    )
