"""BERT's masked-LM corruption, on the host in numpy: which tokens to predict and what the model sees there.

Per row, as in BERT's create_pretraining_data.py: n = max(1, round(rate x candidates)) positions are drawn
without replacement among the real, non-special tokens (never [CLS], [SEP] or padding), at most
`max_predictions`. Of the chosen positions 80 % become [MASK], 10 % a random vocabulary token, 10 % stay.
The model is scored at exactly those positions, so a batch carries them as a fixed-width list ([B, P]),
which keeps the output layer at P instead of S positions per row.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

MASK_SHARE, RANDOM_SHARE = 0.8, 0.1  # the rest (10 %) keep the original token


def max_predictions(max_seq_length: int, rate: float) -> int:
    """Width P of the prediction list: enough for the largest row (BERT used 20 for 128 tokens at 15 %)."""
    return max(1, math.ceil(rate * max_seq_length))


@dataclasses.dataclass(frozen=True)
class MaskedBatch:
    """What one MLM step needs; rows with weight 0 in `target_weights` everywhere are padding rows."""

    input_ids: np.ndarray  # [B, S] int32, corrupted
    attention_mask: np.ndarray  # [B, S] int32
    positions: np.ndarray  # [B, P] int32 positions to predict (0 where unused)
    targets: np.ndarray  # [B, P] int32 original token ids there
    target_weights: np.ndarray  # [B, P] float32, 1 for a real prediction, 0 for an unused slot


def mask_tokens(
    input_ids: np.ndarray,  # [B, S] int, padded with pad_id
    attention_mask: np.ndarray,  # [B, S] 1 = real token
    special_ids: np.ndarray,  # ids never chosen ([CLS], [SEP], [PAD], ...)
    mask_id: int,
    vocab_size: int,
    rng: np.random.Generator,
    rate: float = 0.15,
    width: int | None = None,
) -> MaskedBatch:
    """Corrupt a batch by BERT's rule (module docstring); `width` is P (default from S and rate)."""
    batch, seq_len = input_ids.shape
    width = width or max_predictions(seq_len, rate)
    candidates = (attention_mask > 0) & ~np.isin(input_ids, special_ids)  # [B, S]
    corrupted = input_ids.astype(np.int32).copy()
    positions = np.zeros((batch, width), dtype=np.int32)
    targets = np.zeros((batch, width), dtype=np.int32)
    weights = np.zeros((batch, width), dtype=np.float32)
    for row in range(batch):
        where = np.flatnonzero(candidates[row])
        if where.size == 0:  # a padding row, or a text with no ordinary token: nothing to predict
            continue
        count = min(width, max(1, round(rate * where.size)))
        chosen = np.sort(rng.choice(where, size=count, replace=False))
        positions[row, :count] = chosen
        targets[row, :count] = input_ids[row, chosen]
        weights[row, :count] = 1.0
        draw = rng.random(count)
        to_mask = chosen[draw < MASK_SHARE]
        to_random = chosen[(draw >= MASK_SHARE) & (draw < MASK_SHARE + RANDOM_SHARE)]
        corrupted[row, to_mask] = mask_id
        corrupted[row, to_random] = rng.integers(0, vocab_size, size=to_random.size)
    return MaskedBatch(corrupted, attention_mask.astype(np.int32), positions, targets, weights)
