"""Batching properties: each example exactly once, fill rows weighted 0, shapes only from the bucket set."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bertcls.data.batching import (
    FILL,
    TokenizedSplit,
    bucket_for,
    check_batch_size,
    fit_buckets,
    iterate_batches,
    padding_efficiency,
    plan_epoch,
)
from bertcls.errors import ConfigError


def _split(lengths: np.ndarray, max_len: int) -> TokenizedSplit:
    n = len(lengths)
    ids = np.zeros((n, max_len), dtype=np.int32)
    for i, length in enumerate(lengths):
        ids[i, :length] = i + 1  # every token of example i carries its identity
    return TokenizedSplit(ids, np.zeros_like(ids), lengths.astype(np.int32), np.arange(n, dtype=np.int32))


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 64), min_size=1, max_size=300),
    per_device=st.integers(1, 9),
    devices=st.sampled_from([1, 2, 4, 8]),
    shuffle=st.booleans(),
    epoch=st.integers(0, 3),
    max_buckets=st.integers(1, 6),
)
def test_every_example_once_fill_weight_zero_bucket_shapes(lengths, per_device, devices, shuffle, epoch, max_buckets):
    lengths = np.asarray(lengths)
    batch_size = per_device * devices
    check_batch_size(batch_size, devices)
    buckets = fit_buckets(lengths, 64, max_buckets=max_buckets, multiple=8)
    split = _split(lengths, 64)
    seen = []
    for batch in iterate_batches(split, batch_size, buckets, shuffle=shuffle, seed=3, epoch=epoch):
        batch_len = batch["input_ids"].shape[1]
        assert batch["input_ids"].shape == (batch_size, batch_len) and batch_len in buckets
        real = batch["weights"] > 0
        assert set(np.unique(batch["weights"])) <= {0.0, 1.0}
        seen.extend(batch["labels"][real].tolist())
        # the real rows are intact: tokens match the example's identity and length
        for row in np.flatnonzero(real):
            example = batch["labels"][row]
            assert batch["attention_mask"][row].sum() == lengths[example]
            assert (batch["input_ids"][row, : lengths[example]] == example + 1).all()
    assert sorted(seen) == list(range(len(lengths)))


def test_shuffle_is_seeded_and_changes_per_epoch():
    lengths = np.random.default_rng(0).integers(1, 60, size=500)
    buckets = fit_buckets(lengths, 64)
    first = plan_epoch(lengths, 16, buckets, shuffle=True, seed=1, epoch=0)
    again = plan_epoch(lengths, 16, buckets, shuffle=True, seed=1, epoch=0)
    other = plan_epoch(lengths, 16, buckets, shuffle=True, seed=1, epoch=1)
    assert all((a == b).all() for a, b in zip(first, again, strict=True))
    assert any((a != b).any() for a, b in zip(first, other, strict=True))


def test_fit_buckets_is_optimal_against_brute_force():
    lengths = np.random.default_rng(1).integers(1, 33, size=200)
    candidates = [4, 8, 12, 16, 20, 24, 28, 32]

    def padded(buckets):
        return sum(bucket_for(int(length), buckets) for length in lengths)

    for count in (1, 2, 3):
        best = min(padded((*combo, 32)) for combo in itertools.combinations(candidates[:-1], count - 1))
        fitted = fit_buckets(lengths, 32, max_buckets=count, multiple=4)
        assert fitted[-1] == 32 and len(fitted) <= count
        assert padded(fitted) == best


def test_padding_efficiency_counts_fill_rows():
    lengths = np.array([4, 4, 4])
    plans = plan_epoch(lengths, 4, (4, 8), shuffle=False)
    assert len(plans) == 1 and (plans[0] == FILL).sum() == 1
    assert padding_efficiency(lengths, plans, (4, 8)) == pytest.approx(12 / 16)


def test_batch_size_must_divide_over_devices():
    with pytest.raises(ConfigError, match="not divisible by the 8 devices.*multiple of 8, e.g. 8 or 16"):
        check_batch_size(12, 8)
