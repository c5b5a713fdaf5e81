"""The one callback protocol of both trainers (fine-tuning's `loop.fit` and masked-LM `pretraining.fit`): progress
bars, the MLflow logger, a sweep's pruner and a notebook's recorder all receive the same events."""

from __future__ import annotations

from typing import Any, Protocol


class Callback(Protocol):
    """What a trainer reports; a callback implements any of these (the others are skipped)."""

    def on_train_start(self, info: dict[str, Any]) -> None: ...

    def on_epoch_start(self, epoch: int, epochs: int, batches: int) -> None: ...

    def on_batch_end(self, index: int, stats: dict[str, Any]) -> None: ...  # stats: device scalars

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None: ...  # pretraining: epoch 0 = before


def notify(callbacks, event: str, *args) -> None:
    """Call `event` on every callback that implements it, in order."""
    for callback in callbacks:
        method = getattr(callback, event, None)
        if method is not None:
            method(*args)
