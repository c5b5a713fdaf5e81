"""Jitted train and eval steps over a ('data',) mesh: traced once, compiled ahead of time per batch shape.

Parameters and optimizer state are replicated; batches are sharded on 'data', so XLA inserts the
gradient all-reduce. A train step is the batch's gradients (one program per batch shape) then the optimizer
update (one program for all shapes), each donating the state it replaces. Dropout keys derive from the
optimizer step, so a step is a pure function of (state, batch, base key).

Each step kind is traced once per batch size with a symbolic sequence length (`jax.export`); every padded
length (bucket) then only refines that module and compiles it. Tracing the model in Python costs about as
much per shape as loading a compiled shape from XLA's persistent cache, so this halves a warm start.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
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
from jax.sharding import NamedSharding, PartitionSpec

from bertcls.model.bert import BertClassifier
from bertcls.runtime.xla import compiler_options, persistent_cache_events
from bertcls.train.state import TrainState

Batch = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Objective:
    """The loss: cross_entropy (classes, tags), squared_error (regression) or binary_cross_entropy (multi-label: a
    sigmoid per label; `pos_weight` [L] scales each label's positive term, as PyTorch's BCEWithLogitsLoss).

    `focal_gamma` > 0 makes the (binary) cross-entropy a focal loss (Lin et al., 2017): each term is scaled by
    (1 - p_t)^gamma, p_t the probability given to the true class (per label for multi-label).

    `distill_alpha` > 0 (text classification with a teacher's logits per row, `soft_targets`): the loss is
    alpha x T^2 x KL(teacher || student) at temperature T = `distill_temperature`, plus (1 - alpha) x the
    cross-entropy of the labels (Hinton et al., 2015; DistilBERT's soft-target loss)."""

    kind: str = "cross_entropy"
    pos_weight: tuple[float, ...] | None = None
    focal_gamma: float = 0.0
    distill_alpha: float = 0.0
    distill_temperature: float = 1.0


def objective_of(value: bool | Objective) -> Objective:
    """An Objective from the older `regression` flag (True: squared error) or an Objective."""
    if isinstance(value, Objective):
        return value
    return Objective("squared_error" if value else "cross_entropy")


def _cross_entropy(logits: jax.Array, labels: jax.Array, focal_gamma: float) -> jax.Array:
    """[...] softmax cross-entropy of logits [..., C] at integer labels [...]; with focal_gamma > 0 each term is
    scaled by (1 - p_true)^gamma (computed from log-probabilities, so it stays finite at p_true = 1)."""
    if not focal_gamma:
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)  # [..., C]
    log_p_true = jnp.take_along_axis(log_p, labels[..., None], axis=-1)[..., 0]  # [...]
    return -((-jnp.expm1(log_p_true)) ** focal_gamma) * log_p_true


def _binary_cross_entropy(logits: jax.Array, labels: jax.Array, objective: Objective) -> jax.Array:
    """[B] mean over labels of the binary cross-entropy of logits [B, L] at multi-hot labels [B, L] (focal with
    focal_gamma > 0: the positive term scaled by (1 - p)^gamma, the negative one by p^gamma)."""
    logits = logits.astype(jnp.float32)
    positive = labels * jax.nn.softplus(-logits)  # [B, L] -log sigmoid(x) where the label is present
    negative = (1.0 - labels) * jax.nn.softplus(logits)  # [B, L] -log(1 - sigmoid(x)) where it is absent
    if objective.focal_gamma:
        positive = positive * jax.nn.sigmoid(-logits) ** objective.focal_gamma  # (1 - p)^gamma
        negative = negative * jax.nn.sigmoid(logits) ** objective.focal_gamma  # p^gamma
    if objective.pos_weight is not None:
        positive = positive * jnp.asarray(objective.pos_weight, jnp.float32)[None, :]
    return (positive + negative).mean(axis=-1)


def _distillation(logits: jax.Array, teacher: jax.Array, temperature: float) -> jax.Array:
    """[B] T^2 x KL(softmax(teacher / T) || softmax(student / T)): the soft-target term, scaled so its gradients
    keep their size whatever T (Hinton et al.)."""
    log_p_student = jax.nn.log_softmax(logits.astype(jnp.float32) / temperature, axis=-1)  # [B, C]
    log_p_teacher = jax.nn.log_softmax(teacher.astype(jnp.float32) / temperature, axis=-1)  # [B, C]
    kl = (jnp.exp(log_p_teacher) * (log_p_teacher - log_p_student)).sum(axis=-1)  # [B]
    return temperature**2 * kl


def weighted_loss(
    outputs: jax.Array,
    labels: jax.Array,
    weights: jax.Array,
    objective: bool | Objective,
    soft_targets: jax.Array | None = None,
):
    """(sum of per-row losses * weights, sum of weights): cross-entropy, squared error (regression), or the mean
    over labels of binary cross-entropy (multi-label, labels [B, L] multi-hot); focal with objective.focal_gamma.

    Word tagging (labels [B, S] int): the cross-entropy of every labelled position (IGNORE = -100 carries none), so
    the mean is per labelled word (per subword with label_all_tokens), as Hugging Face's token classifiers."""
    objective = objective_of(objective)
    if objective.kind == "binary_cross_entropy":  # outputs, labels [B, L]
        per_row = _binary_cross_entropy(outputs, labels, objective)  # [B]
        return (per_row * weights).sum(), weights.sum()
    if labels.ndim == 2:  # [B, S] position labels, outputs [B, S, L]
        labelled = (labels >= 0).astype(jnp.float32) * weights[:, None]  # [B, S]
        per_token = _cross_entropy(outputs, jnp.maximum(labels, 0), objective.focal_gamma)  # [B, S]
        return (per_token * labelled).sum(), labelled.sum()
    if objective.kind == "squared_error":
        per_row = (outputs[:, 0] - labels) ** 2  # [B]
    else:
        per_row = _cross_entropy(outputs, labels, objective.focal_gamma)  # [B]
        if objective.distill_alpha and soft_targets is not None:  # soft_targets [B, C]: the teacher's logits
            soft = _distillation(outputs, soft_targets, objective.distill_temperature)
            per_row = objective.distill_alpha * soft + (1.0 - objective.distill_alpha) * per_row
    return (per_row * weights).sum(), weights.sum()


def _forward(model: BertClassifier, batch: Batch, rngs: nnx.Rngs | None) -> jax.Array:
    return model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], rngs=rngs)


def gradient_step(model_def, objective: Objective, wrt, model_state, opt_state, batch: Batch, base_key_data):
    """Gradients of one batch's mean loss: (model state, gradients, stats); compiled once per batch shape.

    Only the parameters `wrt` selects (an NNX filter: the fine-tuning strategy) get gradients. The dropout
    key is folded from the optimizer step (read from `opt_state`), so repeating a step repeats its masks. The
    base key comes as raw key data (uint32), which `jax.export` takes as an argument. The model state comes
    back too: a BatchNorm head updates its statistics in the forward pass.
    """
    model = nnx.merge(model_def, model_state)
    step = opt_state["step"][...]
    key = jax.random.fold_in(jax.random.wrap_key_data(base_key_data), step)

    def loss_fn(model):
        outputs = _forward(model, batch, nnx.Rngs(dropout=key))  # [B, L]
        loss_sum, weight_sum = weighted_loss(
            outputs, batch["labels"], batch["weights"], objective, batch.get("soft_targets")
        )
        return loss_sum / jnp.maximum(weight_sum, 1.0), (loss_sum, weight_sum)

    if batch["input_ids"].ndim == 3:  # [k, B, S]: k micro-batches, gradients summed
        loss_sum, weight_sum, grads = _accumulated_gradients(model, wrt, batch, key, objective)
    else:
        grad_fn = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, wrt), has_aux=True)
        (_, (loss_sum, weight_sum)), grads = grad_fn(model)
    stats = {"loss_sum": loss_sum, "weight_sum": weight_sum, "grad_norm": optax.tree.norm(grads)}
    return nnx.state(model), grads, stats


def update_step(model_def, opt_def, model_state, opt_state, grads):
    """The optimizer update: a function of no batch, so it is compiled once, not into every shape's step."""
    model = nnx.merge(model_def, model_state)
    optimizer = nnx.merge(opt_def, opt_state)
    optimizer.update(model, grads)
    return nnx.state(model), nnx.state(optimizer)


def _accumulated_gradients(model, wrt, batch: Batch, key, objective: Objective):
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
            part_sum, part_weight = weighted_loss(
                outputs, micro_batch["labels"], micro_batch["weights"], objective, micro_batch.get("soft_targets")
            )
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

    A train step is two programs: the gradients of a batch (compiled per batch shape) and the optimizer update
    (compiled once, as it does not depend on the batch), so a new padded length does not recompile the update's
    hundreds of fusions. `trainable`: the NNX filter of the parameters that train (`train.strategy`); the rest
    get no gradient and no optimizer state. `compile_log` records every compile: kind, shape, seconds, and
    whether XLA's persistent cache served it.
    """

    def __init__(
        self,
        model: BertClassifier,
        tx: optax.GradientTransformation,
        mesh,
        regression: bool | Objective,
        seed: int,
        trainable=nnx.Param,
    ):
        self.objective = objective_of(regression)  # the loss; a bool is the older regression flag
        size = lambda tree: sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))  # noqa: E731
        trained, everything = size(nnx.state(model, trainable)), size(nnx.state(model, nnx.Param))
        replicated = NamedSharding(mesh, PartitionSpec())
        self._grads_spec = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated), nnx.state(model, trainable)
        )
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
                functools.partial(gradient_step, self.model_def, self.objective, trainable),
                donate_argnames=("model_state",),
                out_shardings=replicated,
            ),
            "eval": jax.jit(functools.partial(eval_step, self.model_def)),
            "update": jax.jit(
                functools.partial(update_step, self.model_def, self.opt_def),
                donate_argnames=("model_state", "opt_state"),  # the outputs alias these; gradients have no slot
                out_shardings=replicated,
            ),
        }
        self._donated = {"train": (0,), "eval": ()}  # positions in _args
        self._batch_position = {"train": 2, "eval": 1}
        self._traced: dict[tuple, Callable] = {}
        self._compiled: dict[tuple, Callable] = {}
        self._compiler_options = compiler_options(mesh.devices.flat[0].platform)
        self.compile_log: list[dict] = []
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
            label_sets = self.objective.kind == "binary_cross_entropy"  # labels [B, L]: L is not a length
            per_class = {"soft_targets", *(["labels"] if label_sets else [])}  # [B, C]: C is not a length either
            specs[at] = {
                name: _spec(a, None if name in per_class else seq_len, token_ndim) for name, a in batch.items()
            }  # S symbolic
            exported = export.export(self._jitted[kind])(*specs)
            self._traced[key] = jax.jit(exported.call, donate_argnums=self._donated[kind])
        return self._traced[key]

    def _compile(self, kind: str, shape: tuple, lowered) -> Callable:
        """Compile one lowered program, recording its seconds and whether the persistent cache served it."""
        start = time.perf_counter()
        with persistent_cache_events() as cache:
            executable = lowered.compile(self._compiler_options)
        seconds = time.perf_counter() - start
        self.compile_log.append(
            {"kind": kind, "shape": list(shape), "seconds": seconds, "cache_hit": cache["cache_hits"] > 0}
        )
        return executable

    def _executable(self, kind: str, batch: Batch) -> Callable:
        """The compiled step for this kind and batch shape (compiled ahead of time on first use)."""
        shape = tuple(batch["input_ids"].shape)  # [B, S] or [k, B, S]
        if (kind, shape) not in self._compiled:
            start = time.perf_counter()
            lowered = self._traced_once(kind, batch).lower(*self._args(kind, batch))
            self._compiled[kind, shape] = self._compile(kind, shape, lowered)
            self.compile_seconds += time.perf_counter() - start
        return self._compiled[kind, shape]

    def _update_executable(self) -> Callable:
        """The optimizer update, compiled on first use (one program for every batch shape)."""
        if ("update", ()) not in self._compiled:
            start = time.perf_counter()
            lowered = self._jitted["update"].lower(self.model_state, self.opt_state, self._grads_spec)
            self._compiled["update", ()] = self._compile("update", (), lowered)
            self.compile_seconds += time.perf_counter() - start
        return self._compiled["update", ()]

    def precompile(self, kind: str, batches: list[Batch]) -> None:
        """Compile every new shape among `batches` now, several at once, so epoch timings exclude compilation.

        XLA compiles in C++ without the GIL, so shapes (and, for training, the update) compile side by side.
        """
        new = {
            tuple(b["input_ids"].shape): b for b in batches if (kind, tuple(b["input_ids"].shape)) not in self._compiled
        }
        if not new:
            return
        jobs = [functools.partial(self._executable, kind, b) for b in new.values()]
        if kind == "train":
            jobs.append(self._update_executable)
        start, before = time.perf_counter(), self.compile_seconds
        self._traced_once(kind, next(iter(new.values())))  # tracing holds the GIL: once, before the threads
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1)) as pool:
            list(pool.map(lambda job: job(), jobs))
        self.compile_seconds = before + time.perf_counter() - start  # wall time, not the threads' sum

    def train(self, batch: Batch) -> dict[str, jax.Array]:
        """One optimizer step: gradients, then the update; the old state is donated and replaced. Stats stay on
        device."""
        self.model_state, grads, stats = self._executable("train", batch)(*self._args("train", batch))
        self.model_state, self.opt_state = self._update_executable()(self.model_state, self.opt_state, grads)
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
        """(kind, shape) of every compiled step program (the once-compiled update is not a shape)."""
        return sorted(key for key in self._compiled if key[0] != "update")

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
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # eval shapes too (~0.5 s each)
