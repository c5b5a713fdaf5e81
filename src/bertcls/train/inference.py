"""The one inference loop: length-sorted static-shape batches -> a forward function -> outputs per text.

Used by validation/test during training (the compiled eval step on the mesh) and by `Predictor` (the
pyfunc model and `evaluate`). Batches are all dispatched before any result is read back, so the device
never waits on the host between batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import numpy as np

from bertcls.data.batching import FILL, TaggedSplit, TokenizedSplit, collate, plan_epoch

Forward = Callable[[dict[str, np.ndarray]], jax.Array]  # a collated batch -> [B, num_outputs] (tagging: [B, S, C])


def infer_outputs(
    split: TokenizedSplit, forward: Forward, batch_size: int, buckets: Sequence[int], num_outputs: int
) -> np.ndarray:
    """[T, num_outputs] per text of `split`, in its order (a windowed text: the mean of its windows)."""
    return split.text_outputs(infer_row_outputs(split, forward, batch_size, buckets, num_outputs))


def infer_row_outputs(
    split: TokenizedSplit, forward: Forward, batch_size: int, buckets: Sequence[int], num_outputs: int
) -> np.ndarray:
    """[N, num_outputs] per row of `split` (a window of a long text is a row), in its order."""
    rows = np.zeros((len(split), num_outputs), dtype=np.float32)  # [N, C], one per row (window)
    pending = [
        (plan, forward(collate(split, plan, buckets)))
        for plan in plan_epoch(split.lengths, batch_size, buckets, shuffle=False)
    ]
    for plan, outputs in pending:
        real = plan != FILL  # padding rows of the last batch are dropped
        rows[plan[real]] = np.asarray(outputs)[real]
    return rows


def infer_word_outputs(
    split: TaggedSplit, forward: Forward, batch_size: int, buckets: Sequence[int], num_outputs: int, fallback: int
) -> tuple[np.ndarray, np.ndarray]:
    """([W, num_outputs] logits, [W] scored) per word of a tagging split, sentences in order: each word's first
    subword in the row that predicts it. A word with no subword (the tokenizer dropped it) is not scored and gets
    certainty for tag `fallback` (O)."""
    offsets = np.concatenate([[0], np.cumsum(split.word_counts)])[:-1]  # [T] first word of each sentence
    words = np.full((int(split.word_counts.sum()), num_outputs), -1e4, dtype=np.float32)  # [W, C]
    words[:, fallback] = 0.0
    scored = np.zeros(len(words), dtype=bool)
    pending = [
        (plan, forward(collate(split, plan, buckets)))
        for plan in plan_epoch(split.lengths, batch_size, buckets, shuffle=False)
    ]
    for plan, outputs in pending:
        rows = plan[plan != FILL]
        logits = np.asarray(outputs)[plan != FILL]  # [R, S, C]
        index = split.word_index[rows, : logits.shape[1]]  # [R, S] word predicted at each position, or -1
        here = index >= 0
        target = (offsets[split.documents[rows]][:, None] + index)[here]  # global word of each scored position
        words[target] = logits[here]
        scored[target] = True
    return words, scored
