"""Masked-LM training over packed blocks: a jitted step and a held-out evaluation, data parallel on a mesh.

Every block has the same length, so there is one train shape and one eval shape (padding rows make the last
batch full; their prediction weights are 0). Train masks are drawn per epoch and batch from the seed; the
held-out masks are drawn once, so every epoch (and the score before training) is measured on the same task.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from bertcls.data.batching import place_on_mesh
from bertcls.data.masking import MaskedBatch, mask_tokens
from bertcls.model.mlm import MaskedLM
from bertcls.train.callbacks import Callback, notify
from bertcls.train.state import TrainState

Batch = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Masking:
    """What the masking rule needs from the tokenizer, and the rate."""

    special_ids: np.ndarray
    mask_id: int
    vocab_size: int
    rate: float

    def apply(self, ids: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> MaskedBatch:
        return mask_tokens(ids, mask, self.special_ids, self.mask_id, self.vocab_size, rng, self.rate)


def mlm_loss_sums(model: MaskedLM, batch: Batch, rngs: nnx.Rngs | None):
    """(sum of cross-entropy over the predicted positions, number of predicted positions)."""
    logits = model(batch["input_ids"], batch["attention_mask"], batch["positions"], rngs)  # [B, P, V]
    per_position = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])  # [B, P]
    return (per_position * batch["target_weights"]).sum(), batch["target_weights"].sum()


def train_step(model_def, opt_def, model_state, opt_state, batch: Batch, base_key_data):
    """One optimizer step on the mean MLM loss; dropout keys fold in the optimizer step."""
    model = nnx.merge(model_def, model_state)
    optimizer = nnx.merge(opt_def, opt_state)
    key = jax.random.fold_in(jax.random.wrap_key_data(base_key_data), optimizer.step[...])

    def loss_fn(model):
        loss_sum, count = mlm_loss_sums(model, batch, nnx.Rngs(dropout=key))
        return loss_sum / jnp.maximum(count, 1.0), (loss_sum, count)

    (_, (loss_sum, count)), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    optimizer.update(model, grads)
    return nnx.state(model), nnx.state(optimizer), {"loss_sum": loss_sum, "weight_sum": count}


def eval_step(model_def, model_state, batch: Batch):
    return mlm_loss_sums(nnx.merge(model_def, model_state), batch, None)


def batches(ids: np.ndarray, mask: np.ndarray, order: np.ndarray, batch_size: int) -> list[tuple[np.ndarray, ...]]:
    """Blocks in `order`, batch_size at a time; the last batch filled with empty rows (all padding)."""
    out = []
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        fill = batch_size - len(rows)
        out.append((np.pad(ids[rows], ((0, fill), (0, 0))), np.pad(mask[rows], ((0, fill), (0, 0)))))
    return out


def _as_batch(masked: MaskedBatch) -> dict[str, np.ndarray]:
    return dataclasses.asdict(masked)


class Pretrainer(TrainState):
    """The masked-LM trainer: the device state and the two compiled steps; `fit` runs the epochs."""

    def __init__(self, model: MaskedLM, tx: optax.GradientTransformation, mesh, seed: int):
        super().__init__(model, tx, mesh, seed)
        self.seed = seed
        self._train = jax.jit(
            functools.partial(train_step, self.model_def, self.opt_def), donate_argnames=("model_state", "opt_state")
        )
        self._eval = jax.jit(functools.partial(eval_step, self.model_def))

    def evaluate(self, heldout: list[dict[str, np.ndarray]]) -> float:
        """Mean MLM loss (nats per predicted token) over the held-out batches."""
        sums = [self._eval(self.model_state, place_on_mesh(b, self.mesh)) for b in heldout]
        loss_sum, count = (float(sum(jax.device_get(part))) for part in zip(*sums, strict=True))
        return loss_sum / max(count, 1.0)

    def train_epoch(
        self, ids: np.ndarray, mask: np.ndarray, masking: Masking, batch_size: int, epoch: int, callbacks=()
    ) -> float:
        """One pass over the blocks in a seeded order (each batch reported to `callbacks`); returns the mean
        train MLM loss of the epoch."""
        rng = np.random.default_rng([self.seed, epoch])
        plan = batches(ids, mask, rng.permutation(len(ids)), batch_size)
        totals = []
        for index, (batch_ids, batch_mask) in enumerate(plan):
            batch = place_on_mesh(_as_batch(masking.apply(batch_ids, batch_mask, rng)), self.mesh)
            self.model_state, self.opt_state, stats = self._train(
                self.model_state, self.opt_state, batch, self.base_key
            )
            totals.append((stats["loss_sum"], stats["weight_sum"]))
            notify(callbacks, "on_batch_end", index, stats)
        loss_sum, count = (float(sum(jax.device_get(part))) for part in zip(*totals, strict=True))
        return loss_sum / max(count, 1.0)


def heldout_batches(ids: np.ndarray, mask: np.ndarray, masking: Masking, batch_size: int, seed: int) -> list[dict]:
    """The held-out blocks with masks drawn once (seeded), so every evaluation scores the same predictions."""
    rng = np.random.default_rng([seed, 2**31 - 1])
    return [_as_batch(masking.apply(i, m, rng)) for i, m in batches(ids, mask, np.arange(len(ids)), batch_size)]


def perplexity(loss: float) -> float:
    """exp(mean loss): the MLM perplexity over the predicted tokens (inf past float range)."""
    return math.exp(loss) if loss < 700 else math.inf


def fit(
    trainer: Pretrainer,
    train: tuple[np.ndarray, np.ndarray],
    heldout: list[dict],
    masking: Masking,
    batch_size: int,
    epochs: int,
    callbacks: Sequence[Callback] = (),
) -> list[dict[str, float]]:
    """Score the held-out set before training (reported as epoch 0), then train and score after each epoch."""
    started = time.perf_counter()
    before = trainer.evaluate(heldout)
    history = [{"val_mlm_loss": before, "val_perplexity": perplexity(before)}]
    notify(callbacks, "on_epoch_end", 0, history[0])
    steps = math.ceil(len(train[0]) / batch_size)
    for epoch in range(1, epochs + 1):
        notify(callbacks, "on_epoch_start", epoch, epochs, steps)
        train_loss = trainer.train_epoch(*train, masking, batch_size, epoch, callbacks)
        val_loss = trainer.evaluate(heldout)
        metrics = {
            "train_mlm_loss": train_loss,
            "train_perplexity": perplexity(train_loss),
            "val_mlm_loss": val_loss,
            "val_perplexity": perplexity(val_loss),
            "elapsed_s": time.perf_counter() - started,
        }
        history.append(metrics)
        notify(callbacks, "on_epoch_end", epoch, metrics)
    return history
