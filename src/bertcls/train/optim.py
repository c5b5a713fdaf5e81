"""AdamW with a weight-decay mask, warmup + linear decay to zero, and global-norm clipping (optax)."""

from __future__ import annotations

import jax
import optax

from bertcls.config import OptimConfig


def decay_mask(params):
    """Decay matrices (kernels, embeddings) only; biases and LayerNorm scales are 1-D and exempt."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def learning_rate_schedule(config: OptimConfig, total_steps: int) -> optax.Schedule:
    """Linear warmup from 0 over warmup_ratio of the steps, then linear decay to 0 at the last step."""
    warmup = int(round(config.warmup_ratio * total_steps))
    return optax.join_schedules(
        [
            optax.linear_schedule(0.0, config.lr, max(warmup, 1)),
            optax.linear_schedule(config.lr, 0.0, max(total_steps - warmup, 1)),
        ],
        boundaries=[warmup],
    )


def make_optimizer(config: OptimConfig, total_steps: int) -> optax.GradientTransformation:
    schedule = learning_rate_schedule(config, total_steps)
    adamw = optax.adamw(
        schedule,
        b1=config.adam_b1,
        b2=config.adam_b2,
        eps=config.adam_eps,
        weight_decay=config.weight_decay,
        mask=decay_mask,
    )
    if config.max_grad_norm > 0:
        return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), adamw)
    return adamw
