"""AdamW with a weight-decay mask, warmup + linear decay to zero, and global-norm clipping (optax).

The learning rate, its schedule (warmup and total steps) and the weight decay live in the optimizer
state as arrays, not in Python closures: a float closed over by a jitted step is a compile-time constant,
so every new learning rate or epoch count would compile a new executable and miss XLA's persistent cache.
As traced values, runs (and sweep trials) that differ only in these hyperparameters share one compiled
train step per batch shape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bertcls.config import OptimConfig


def decay_mask(params):
    """Decay matrices (kernels, embeddings) only; biases and LayerNorm scales are 1-D and exempt."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def warmup_steps(config: OptimConfig, total_steps: int) -> int:
    return int(round(config.warmup_ratio * total_steps))


def warmup_then_linear_decay(count, peak, warmup, total):
    """Linear warmup from 0 to `peak` over `warmup` steps, then linear decay to 0 at step `total`.

    Works on numbers (the logged `lr`) and on traced arrays (inside the train step) alike; the same
    values as optax.join_schedules of two linear_schedules.
    """
    xp = jnp if isinstance(count, jax.Array) else np
    rising = peak * xp.minimum(count / xp.maximum(warmup, 1), 1.0)
    falling = peak * (1.0 - xp.minimum((count - warmup) / xp.maximum(total - warmup, 1), 1.0))
    return xp.where(count < warmup, rising, falling)


def learning_rate_schedule(config: OptimConfig, total_steps: int):
    """The learning rate at a step, as a host-side function (for logging and tests)."""
    warmup = warmup_steps(config, total_steps)
    return lambda count: float(warmup_then_linear_decay(np.float64(count), config.lr, warmup, total_steps))


class TracedHyperparams(NamedTuple):
    """The optimizer-state leaves that hold what used to be compile-time constants."""

    count: jax.Array  # [] int32, steps taken
    peak_lr: jax.Array  # [] float32
    warmup_steps: jax.Array  # [] float32
    total_steps: jax.Array  # [] float32
    weight_decay: jax.Array  # [] float32
    lr_scales: Any  # per parameter, [] float32: its share of the learning rate (layer-wise decay; 1.0 = off)


LrScale = Callable[[Sequence[Any]], float]  # a parameter's path -> its share of the learning rate


def decay_and_schedule(config: OptimConfig, total_steps: int, lr_scale: LrScale | None = None):
    """Decoupled weight decay on matrices, then -lr(step) x scale scaling: adamw's tail with traced values."""

    def init_fn(params):
        as_f32 = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
        scales = jax.tree_util.tree_map_with_path(lambda path, _: as_f32(lr_scale(path) if lr_scale else 1.0), params)
        return TracedHyperparams(
            jnp.zeros([], jnp.int32),
            as_f32(config.lr),
            as_f32(warmup_steps(config, total_steps)),
            as_f32(total_steps),
            as_f32(config.weight_decay),
            scales,
        )

    def update_fn(updates, state: TracedHyperparams, params):
        lr = warmup_then_linear_decay(
            state.count.astype(jnp.float32), state.peak_lr, state.warmup_steps, state.total_steps
        )
        decayed = jax.tree.map(
            lambda u, p, m: u + state.weight_decay * p if m else u, updates, params, decay_mask(params)
        )
        scaled = jax.tree.map(lambda u, scale: -(lr * scale) * u, decayed, state.lr_scales)
        return scaled, state._replace(count=optax.safe_increment(state.count))

    return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(config: OptimConfig, total_steps: int, lr_scale: LrScale | None = None):
    """Clip (unless max_grad_norm is 0) -> Adam moments -> decoupled decay -> scheduled learning rate.

    `lr_scale` (e.g. layer-wise decay, `train.strategy.lr_scale_fn`) sets each parameter's share of the rate;
    the shares are optimizer-state arrays too, so another decay factor reuses the compiled step.
    """
    parts = [optax.clip_by_global_norm(config.max_grad_norm)] if config.max_grad_norm > 0 else []
    parts += [optax.scale_by_adam(b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps)]
    return optax.chain(*parts, decay_and_schedule(config, total_steps, lr_scale))
