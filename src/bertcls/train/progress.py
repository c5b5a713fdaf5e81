"""A tqdm progress bar over each epoch's batches, as a fit() callback (process 0 adds it; others do not)."""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm.auto import tqdm

SYNC_EVERY = 20  # batches between host syncs for the running loss (a sync stalls the dispatch queue)


def rate_label(task) -> str:
    """What the loss weights count for this task: examples, or (word tagging) labelled words."""
    return "words_per_s" if task.token_level else "ex_per_s"


class ProgressBar:
    """Batches done, running loss and examples/s of the current epoch, on stderr."""

    def __init__(self, rate_label: str = "ex_per_s") -> None:
        self.rate_label = rate_label  # what weight_sum counts per second: examples, or MLM predictions
        self._bar = None
        self._parts: list[tuple[Any, Any]] = []
        self._start = 0.0

    def on_epoch_start(self, epoch: int, epochs: int, batches: int) -> None:
        self._parts, self._start = [], time.perf_counter()
        self._bar = tqdm(
            total=batches,
            desc=f"epoch {epoch}/{epochs}",
            unit="batch",
            file=sys.stderr,
            mininterval=0.5 if sys.stderr.isatty() else 10.0,
            leave=True,
        )

    def on_batch_end(self, index: int, stats: dict[str, Any]) -> None:
        self._parts.append((stats["loss_sum"], stats["weight_sum"]))  # device scalars: no sync yet
        self._bar.update(1)
        if index % SYNC_EVERY == SYNC_EVERY - 1 or index == self._bar.total - 1:
            seen = sum(float(w) for _, w in self._parts)
            loss = sum(float(s) for s, _ in self._parts) / max(seen, 1)
            rate = f"{seen / (time.perf_counter() - self._start):.1f}"
            self._bar.set_postfix({"loss": f"{loss:.4f}", self.rate_label: rate})

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        if self._bar is not None:
            self._bar.close()
