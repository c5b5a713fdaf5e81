"""The one inference loop: length-sorted static-shape batches -> a forward function -> outputs per text.

Used by validation/test during training (the compiled eval step on the mesh) and by `Predictor` (the
pyfunc model and `evaluate`). Batches are all dispatched before any result is read back, so the device
never waits on the host between batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import numpy as np

from bertcls.data.batching import FILL, TokenizedSplit, collate, plan_epoch

Forward = Callable[[dict[str, np.ndarray]], jax.Array]  # a collated batch -> [B, num_outputs]


def infer_outputs(
    split: TokenizedSplit, forward: Forward, batch_size: int, buckets: Sequence[int], num_outputs: int
) -> np.ndarray:
    """[T, num_outputs] per text of `split`, in its order (a windowed text: the mean of its windows)."""
    rows = np.zeros((len(split), num_outputs), dtype=np.float32)  # [N, C], one per row (window)
    pending = [
        (plan, forward(collate(split, plan, buckets)))
        for plan in plan_epoch(split.lengths, batch_size, buckets, shuffle=False)
    ]
    for plan, outputs in pending:
        real = plan != FILL  # padding rows of the last batch are dropped
        rows[plan[real]] = np.asarray(outputs)[real]
    return split.text_outputs(rows)
