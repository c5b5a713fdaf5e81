"""Jitted train and eval steps over a ('data',) mesh: traced once, compiled ahead of time per batch shape.

Parameters and optimizer state are replicated; batches are sharded on 'data', so XLA inserts the
gradient all-reduce. The train step donates the old state. Dropout keys derive from the optimizer step,
so a step is a pure function of (state, batch, base key).

Each step kind is traced once per batch size with a symbolic sequence length (`jax.export`); every padded
length (bucket) then only refines that module and compiles it. Tracing the model in Python costs about as
much per shape as loading a compiled shape from XLA's persistent cache, so this halves a warm start.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import export

from bertcls.model.bert import BertClassifier
from bertcls.train.state import TrainState

Batch = dict[str, jax.Array]


def weighted_loss(outputs: jax.Array, labels: jax.Array, weights: jax.Array, regression: bool):
    """(sum of per-row losses * weights, sum of weights): cross-entropy, or squared error for regression."""
    if regression:
        per_row = (outputs[:, 0] - labels) ** 2  # [B]
    else:
        per_row = optax.softmax_cross_entropy_with_integer_labels(outputs, labels)  # [B]
    return (per_row * weights).sum(), weights.sum()


def _forward(model: BertClassifier, batch: Batch, rngs: nnx.Rngs | None) -> jax.Array:
    return model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], rngs=rngs)


def train_step(model_def, opt_def, regression: bool, wrt, model_state, opt_state, batch: Batch, base_key_data):
    """One optimizer step: a pure function of (graph defs, states, batch, key) -> (new states, stats).

    Only the parameters `wrt` selects (an NNX filter: the fine-tuning strategy) get gradients and updates.
    The dropout key is folded from the optimizer step, so repeating a step repeats its dropout masks.
    The base key comes as raw key data (uint32), which `jax.export` takes as an argument.
    """
    model = nnx.merge(model_def, model_state)
    optimizer = nnx.merge(opt_def, opt_state)
    key = jax.random.fold_in(jax.random.wrap_key_data(base_key_data), optimizer.step[...])

    def loss_fn(model):
        outputs = _forward(model, batch, nnx.Rngs(dropout=key))  # [B, L]
        loss_sum, weight_sum = weighted_loss(outputs, batch["labels"], batch["weights"], regression)
        return loss_sum / jnp.maximum(weight_sum, 1.0), (loss_sum, weight_sum)

    if batch["input_ids"].ndim == 3:  # [k, B, S]: k micro-batches, gradients summed
        loss_sum, weight_sum, grads = _accumulated_gradients(model, wrt, batch, key, regression)
    else:
        grad_fn = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, wrt), has_aux=True)
        (_, (loss_sum, weight_sum)), grads = grad_fn(model)
    stats = {"loss_sum": loss_sum, "weight_sum": weight_sum, "grad_norm": optax.tree.norm(grads)}
    optimizer.update(model, grads)
    return nnx.state(model), nnx.state(optimizer), stats


def _accumulated_gradients(model, wrt, batch: Batch, key, regression: bool):
    """Gradients of the whole [k, B] batch's mean loss, one micro-batch [B] at a time (lax.scan).

    Each micro-batch's loss sum is divided by the weight of all k micro-batches, so the summed gradient
    is the one a single batch of k x B rows would give (up to float summation order; tested).
    """
    graphdef, params, rest = nnx.split(model, wrt, ...)
    total_weight = jnp.maximum(batch["weights"].sum(), 1.0)

    def micro_step(carry, inputs):
        grads, loss_sum, weight_sum = carry
        micro_batch, index = inputs

        def loss_of(params):
            micro_model = nnx.merge(graphdef, params, rest)
            outputs = _forward(micro_model, micro_batch, nnx.Rngs(dropout=jax.random.fold_in(key, index)))  # [B, L]
            part_sum, part_weight = weighted_loss(outputs, micro_batch["labels"], micro_batch["weights"], regression)
            return part_sum / total_weight, (part_sum, part_weight)

        (_, (part_sum, part_weight)), part_grads = jax.value_and_grad(loss_of, has_aux=True)(params)
        grads = jax.tree.map(jnp.add, grads, part_grads)
        return (grads, loss_sum + part_sum, weight_sum + part_weight), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    steps = jnp.arange(batch["input_ids"].shape[0])  # [k]
    (grads, loss_sum, weight_sum), _ = jax.lax.scan(micro_step, (zeros, 0.0, 0.0), (batch, steps))
    return loss_sum, weight_sum, grads


def eval_step(model_def, model_state, batch: Batch) -> jax.Array:
    """Eval-mode outputs [B, L]; the loss is computed on the host, per text."""
    return _forward(nnx.merge(model_def, model_state), batch, None)


def _spec(array, seq_len=None, token_ndim: int = 2) -> jax.ShapeDtypeStruct:
    """The array's abstract value; with `seq_len`, a token array ([B, S] or [k, B, S]) gets that (symbolic) S."""
    shape = (*array.shape[:-1], seq_len) if seq_len is not None and array.ndim == token_ndim else array.shape
    return jax.ShapeDtypeStruct(shape, array.dtype, sharding=array.sharding)


class Trainer(TrainState):
    """The fine-tuning trainer: the device state and one compiled executable per (step kind, batch shape).

    `trainable`: the NNX filter of the parameters that train (`train.strategy`); the rest get no gradient
    and no optimizer state.
    """

    def __init__(
        self,
        model: BertClassifier,
        tx: optax.GradientTransformation,
        mesh,
        regression: bool,
        seed: int,
        trainable=nnx.Param,
    ):
        size = lambda tree: sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))  # noqa: E731
        trained, everything = size(nnx.state(model, trainable)), size(nnx.state(model, nnx.Param))
        super().__init__(model, tx, mesh, seed, wrt=trainable)
        optimizer_bytes = sum(leaf.nbytes for leaf in jax.tree.leaves(self.opt_state))
        self._counts = {
            "trainable_params": trained,
            "frozen_params": everything - trained,
            "optimizer_state_mib": round(optimizer_bytes / 2**20, 1),
        }
        # The graph defs and the task kind are bound here; everything traced is an explicit argument.
        self._jitted = {
            "train": jax.jit(
                functools.partial(train_step, self.model_def, self.opt_def, regression, trainable),
                donate_argnames=("model_state", "opt_state"),
            ),
            "eval": jax.jit(functools.partial(eval_step, self.model_def)),
        }
        self._donated = {"train": (0, 1), "eval": ()}  # positions in _args
        self._batch_position = {"train": 2, "eval": 1}
        self._traced: dict[tuple, Callable] = {}
        self._compiled: dict[tuple, Callable] = {}
        self.compile_seconds = 0.0

    def _args(self, kind: str, batch: Batch) -> tuple:
        """The step's traced arguments in its signature's order: the current device state, then the batch."""
        if kind == "train":
            return (self.model_state, self.opt_state, batch, self.base_key)
        return (self.model_state, batch)

    def _traced_once(self, kind: str, batch: Batch) -> Callable:
        """The step traced for this batch size with a symbolic sequence length, as a jitted callable."""
        key = (kind, batch["input_ids"].shape[:-1])  # (B,) or (k, B)
        if key not in self._traced:
            (seq_len,) = export.symbolic_shape("seq_len")
            specs = list(jax.tree.map(_spec, self._args(kind, batch)))
            at = self._batch_position[kind]
            token_ndim = batch["input_ids"].ndim
            specs[at] = {name: _spec(a, seq_len, token_ndim) for name, a in batch.items()}  # S symbolic
            exported = export.export(self._jitted[kind])(*specs)
            self._traced[key] = jax.jit(exported.call, donate_argnums=self._donated[kind])
        return self._traced[key]

    def _executable(self, kind: str, batch: Batch) -> Callable:
        """The compiled step for this kind and batch shape (compiled ahead of time on first use)."""
        key = (kind, tuple(batch["input_ids"].shape))  # [B, S] or [k, B, S]
        if key not in self._compiled:
            start = time.perf_counter()
            self._compiled[key] = self._traced_once(kind, batch).lower(*self._args(kind, batch)).compile()
            self.compile_seconds += time.perf_counter() - start
        return self._compiled[key]

    def precompile(self, kind: str, batches: list[Batch]) -> None:
        """Compile every new shape among `batches` now, several at once, so epoch timings exclude compilation.

        XLA compiles in C++ without the GIL, so shapes compile side by side on a multi-core host.
        """
        new = {
            tuple(b["input_ids"].shape): b for b in batches if (kind, tuple(b["input_ids"].shape)) not in self._compiled
        }
        if not new:
            return
        start = time.perf_counter()
        traced = self._traced_once(kind, next(iter(new.values())))
        compile_one = lambda b: traced.lower(*self._args(kind, b)).compile()  # noqa: E731
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(new), os.cpu_count() or 1)) as pool:
            executables = list(pool.map(compile_one, new.values()))
        self._compiled.update({(kind, shape): e for shape, e in zip(new, executables, strict=True)})
        self.compile_seconds += time.perf_counter() - start

    def train(self, batch: Batch) -> dict[str, jax.Array]:
        """One optimizer step; the old state is donated and replaced. Stats stay on device."""
        self.model_state, self.opt_state, stats = self._executable("train", batch)(*self._args("train", batch))
        return stats

    def evaluate(self, batch: Batch) -> jax.Array | np.ndarray:
        """Eval-mode outputs [B, L] for a batch placed on the mesh (gathered to every process on many hosts)."""
        outputs = self._executable("eval", batch)(*self._args("eval", batch))
        if jax.process_count() > 1:  # rows live on other hosts' devices: an all-gather, every process the same
            from jax.experimental import multihost_utils

            return multihost_utils.process_allgather(outputs, tiled=True)
        return outputs

    @property
    def compiled_shapes(self) -> list[tuple]:
        return sorted(self._compiled)

    def parameter_counts(self) -> dict[str, int | float]:
        """Trainable and frozen parameter counts and the optimizer state's size (what freezing saves)."""
        return dict(self._counts)


def make_data_mesh(devices=None):
    """A 1-D ('data',) mesh over all devices, in Auto mode so XLA's partitioner places the collectives."""
    devices = devices if devices is not None else jax.devices()
    return jax.make_mesh((len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)


def enable_compilation_cache(directory) -> None:
    """Persist compiled executables across runs (XLA's cache; works on CPU, GPU and TPU)."""
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
