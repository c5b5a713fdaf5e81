"""BERT-family encoder (BERT, MiniLM, TinyBERT, DistilBERT) and classification heads in Flax NNX.

Read top to bottom: embeddings -> post-LN transformer layers -> pooling -> head (or, head="token", the
head on every token's state: HF's *ForTokenClassification). No IO, no mlflow.
Dropout is active only when `rngs` is passed to `__call__` (train mode); without it the model is
deterministic (eval mode). Parameters are float32; `compute_dtype` sets the matmul/activation dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from bertcls.model.config import TOKEN_HEAD, ModelConfig

Array = jax.Array

_INIT = nnx.initializers.normal(stddev=0.02)  # BERT's truncated-normal-ish init, as HF uses


def _dtype(config: ModelConfig) -> jnp.dtype:
    return jnp.bfloat16 if config.compute_dtype == "bfloat16" else jnp.float32


def low_precision_matmul(x: Array, kernel: Array) -> Array:
    """`x @ kernel` with both cast to x's (16-bit) dtype and f32 accumulation: [..., I] x [I, O] -> f32 [..., O].

    Forward and both backward matmuls take 16-bit inputs and accumulate in f32 (a mixed-dtype dot would
    take XLA's slow path, and a 16-bit-output dot gains nothing on CPU). `kernel` is an f32 master weight; its
    gradient is accumulated and returned in f32, never rounded to 16 bits.
    """
    return _low_precision_matmul(x, kernel)


@jax.custom_vjp
def _low_precision_matmul(x: Array, kernel: Array) -> Array:
    return jnp.dot(x, kernel.astype(x.dtype), preferred_element_type=jnp.float32)


def _low_precision_matmul_fwd(x: Array, kernel: Array):
    low = kernel.astype(x.dtype)  # [I, O]
    return jnp.dot(x, low, preferred_element_type=jnp.float32), (x, low)


def _low_precision_matmul_bwd(residuals, grad: Array):
    x, low = residuals
    grad = grad.astype(x.dtype)  # [..., O]
    dx = jnp.dot(grad, low.T, preferred_element_type=jnp.float32).astype(x.dtype)  # [..., I]
    rows_x, rows_grad = x.reshape(-1, x.shape[-1]), grad.reshape(-1, grad.shape[-1])  # [T, I], [T, O]
    dkernel = jnp.dot(rows_x.T, rows_grad, preferred_element_type=jnp.float32)  # [I, O], the f32 master's dtype
    return dx, dkernel


_low_precision_matmul.defvjp(_low_precision_matmul_fwd, _low_precision_matmul_bwd)


def project(x: Array, kernel: Array, bias: Array, dtype: jnp.dtype) -> Array:
    """x @ kernel + bias in `dtype`: plain f32, or 16-bit matmuls accumulating in f32 (`low_precision_matmul`)."""
    if dtype == jnp.float32:
        return x.astype(jnp.float32) @ kernel + bias
    return (low_precision_matmul(x.astype(dtype), kernel) + bias).astype(dtype)


class Dense(nnx.Module):
    """A dense layer on the last axis with f32 `kernel` [I, O] and `bias` [O] (the names the key tables use)."""

    def __init__(self, d_in: int, d_out: int, config: ModelConfig, rngs: nnx.Rngs):
        self.dtype = _dtype(config)
        self.kernel = nnx.Param(_INIT(rngs.params(), (d_in, d_out), jnp.float32))
        rngs.params()  # drawn and unused, as nnx.Linear draws a key for its zeros: the same seeds, the same init
        self.bias = nnx.Param(jnp.zeros((d_out,), jnp.float32))

    def __call__(self, x: Array) -> Array:
        return project(x, self.kernel[...], self.bias[...], self.dtype)


def _dense(d_in: int, d_out: int, config: ModelConfig, rngs: nnx.Rngs) -> Dense:
    return Dense(d_in, d_out, config, rngs)


def _layer_norm(config: ModelConfig, rngs: nnx.Rngs) -> nnx.LayerNorm:
    # use_fast_variance=False: E[(x-mu)^2] as PyTorch computes it, for parity at 1e-5.
    return nnx.LayerNorm(
        config.hidden_size,
        epsilon=config.layer_norm_eps,
        dtype=_dtype(config),
        param_dtype=jnp.float32,
        use_fast_variance=False,
        rngs=rngs,
    )


def _batch_norm(config: ModelConfig, rngs: nnx.Rngs) -> nnx.BatchNorm:
    return nnx.BatchNorm(
        config.hidden_size, momentum=0.9, epsilon=1e-5, dtype=_dtype(config), param_dtype=jnp.float32, rngs=rngs
    )


def activation(name: str, x: Array) -> Array:
    """The hidden activation named in the HF config (exact or tanh-approximated GELU, or ReLU)."""
    if name == "gelu":
        return jax.nn.gelu(x, approximate=False)
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return jax.nn.gelu(x, approximate=True)
    return jax.nn.relu(x)


class Embeddings(nnx.Module):
    """Word + absolute position (+ token type, BERT only) embeddings, then LayerNorm and dropout."""

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        self.config = config
        dtype = _dtype(config)
        embed = lambda n: nnx.Embed(  # noqa: E731
            n, config.hidden_size, dtype=dtype, param_dtype=jnp.float32, embedding_init=_INIT, rngs=rngs
        )
        self.word = embed(config.vocab_size)
        self.position = embed(config.max_position_embeddings)
        self.token_type = embed(config.type_vocab_size) if config.type_vocab_size > 0 else None
        self.norm = _layer_norm(config, rngs)
        self.dropout = nnx.Dropout(config.hidden_dropout)

    def __call__(self, input_ids: Array, token_type_ids: Array | None, rngs: nnx.Rngs | None) -> Array:
        seq_len = input_ids.shape[1]
        x = self.word(input_ids) + self.position(jnp.arange(seq_len)[None, :])  # [B, S, H]
        if self.token_type is not None:
            if token_type_ids is None:
                token_type_ids = jnp.zeros_like(input_ids)
            x = x + self.token_type(token_type_ids)
        x = self.norm(x.reshape(-1, x.shape[-1]))  # [B*S, H]: every later layer works on flat tokens
        return self.dropout(x, deterministic=rngs is None, rngs=rngs)


class SelfAttention(nnx.Module):
    """Multi-head self-attention through jax.nn.dot_product_attention, with the padding mask.

    Query, key and value are projected on the flat tokens [B*S, H]; only attention itself sees [B, S, N, D].
    (Joining them into one [H, 3H] matmul measured the same on CPU, and XLA merges dots sharing an operand.)
    """

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        self.config = config
        hidden = config.hidden_size
        self.query = _dense(hidden, hidden, config, rngs)
        self.key = _dense(hidden, hidden, config, rngs)
        self.value = _dense(hidden, hidden, config, rngs)
        self.output = _dense(hidden, hidden, config, rngs)
        self.dropout = nnx.Dropout(config.attention_dropout)

    def __call__(self, x: Array, mask: Array, rngs: nnx.Rngs | None) -> Array:
        batch, seq_len = mask.shape[0], mask.shape[-1]  # x: [B*S, H]
        heads, head_dim = self.config.num_heads, self.config.head_dim
        split = lambda t: t.reshape(batch, seq_len, heads, head_dim)  # noqa: E731  [B, S, N, D]
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        if rngs is None or self.config.attention_dropout == 0.0:
            context = fused_attention(q, k, v, mask)  # [B, S, N, D]
        else:
            context = _attention_with_dropout(q, k, v, mask, self.dropout, rngs)
        return self.output(context.reshape(batch * seq_len, heads * head_dim))  # [B*S, H]


_cudnn_refused: list[str] = []  # why cuDNN attention was not available, once per process


def fused_attention(q: Array, k: Array, v: Array, mask: Array) -> Array:
    """Attention without dropout: cuDNN's fused kernel on a GPU in 16-bit, else XLA's (`jax.nn.dot_product_attention`).

    cuDNN takes the padding as key lengths (our batches are right-padded: `data.batching.collate`); where it is
    unavailable (no cuDNN, an unsupported head size) tracing raises and XLA's attention is used instead.
    """
    if jax.default_backend() == "gpu" and q.dtype in (jnp.bfloat16, jnp.float16) and not _cudnn_refused:
        lengths = mask.reshape(mask.shape[0], -1).sum(-1).astype(jnp.int32)  # [B] real tokens per row
        try:
            return jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=lengths, implementation="cudnn")
        except (RuntimeError, ValueError, NotImplementedError) as refused:
            _cudnn_refused.append(str(refused))
    return jax.nn.dot_product_attention(q, k, v, mask=mask)


def _attention_with_dropout(q: Array, k: Array, v: Array, mask: Array, dropout: nnx.Dropout, rngs: nnx.Rngs) -> Array:
    """Explicit softmax attention so dropout can hit the attention probabilities (as BERT does)."""
    scale = q.shape[-1] ** -0.5
    logits = jnp.einsum("bqnd,bknd->bnqk", q, k).astype(jnp.float32) * scale  # [B, N, S, S]
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    probs = dropout(probs, deterministic=False, rngs=rngs)
    return jnp.einsum("bnqk,bknd->bqnd", probs, v)  # [B, S, N, D]


class TransformerLayer(nnx.Module):
    """Post-LN block: x = LN(x + attn(x)); x = LN(x + ffn(x)). Same for BERT and DistilBERT.

    On flat tokens [B*S, H]: a weight gradient then contracts over one axis, which XLA fuses better than (B, S).
    """

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        self.config = config
        self.attention = SelfAttention(config, rngs)
        self.attention_norm = _layer_norm(config, rngs)
        self.ffn_in = _dense(config.hidden_size, config.intermediate_size, config, rngs)
        self.ffn_out = _dense(config.intermediate_size, config.hidden_size, config, rngs)
        self.ffn_norm = _layer_norm(config, rngs)
        self.dropout = nnx.Dropout(config.hidden_dropout)

    def __call__(self, x: Array, mask: Array, rngs: nnx.Rngs | None) -> Array:
        drop = lambda t: self.dropout(t, deterministic=rngs is None, rngs=rngs)  # noqa: E731
        x = self.attention_norm(x + drop(self.attention(x, mask, rngs)))  # [B*S, H]
        hidden = activation(self.config.hidden_act, self.ffn_in(x))  # [B*S, I]
        return self.ffn_norm(x + drop(self.ffn_out(hidden)))  # [B*S, H]


class Encoder(nnx.Module):
    """Embeddings and the layer stack; returns the last hidden states."""

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        self.config = config
        self.embeddings = Embeddings(config, rngs)
        self.layers = nnx.List([TransformerLayer(config, rngs) for _ in range(config.num_layers)])

    def __call__(
        self,
        input_ids: Array,  # [B, S] int
        attention_mask: Array,  # [B, S] 1 = real token, 0 = padding
        token_type_ids: Array | None = None,  # [B, S] int
        rngs: nnx.Rngs | None = None,
    ) -> Array:
        mask = attention_mask.astype(bool)[:, None, None, :]  # [B, 1, 1, S] -> keys only
        x = self.embeddings(input_ids, token_type_ids, rngs)  # [B*S, H]
        for layer in self.layers:
            x = layer(x, mask, rngs)
        return x.reshape(*input_ids.shape, -1)  # [B, S, H]


class Pooler(nnx.Module):
    """Dense + activation on the [CLS] state: BERT's pooler (tanh) or DistilBERT's pre_classifier (relu)."""

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        self.config = config
        self.dense = _dense(config.hidden_size, config.hidden_size, config, rngs)

    def __call__(self, cls_state: Array) -> Array:
        pooled = self.dense(cls_state)  # [B, H]
        return jax.nn.relu(pooled) if self.config.model_type == "distilbert" else jnp.tanh(pooled)


class MLPHead(nnx.Module):
    """(dropout -> dense -> norm -> relu) twice, then the output projection.

    The norm is LayerNorm, or with `head_batchnorm` BatchNorm: batch statistics (over the global batch, so
    the same on any device count) while training, its running averages when predicting.
    """

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        self.config = config
        hidden = config.hidden_size
        self.dense1 = _dense(hidden, hidden, config, rngs)
        self.norm1 = _batch_norm(config, rngs) if config.head_batchnorm else _layer_norm(config, rngs)
        self.dense2 = _dense(hidden, hidden, config, rngs)
        self.norm2 = _batch_norm(config, rngs) if config.head_batchnorm else _layer_norm(config, rngs)
        self.dropout = nnx.Dropout(config.classifier_dropout)
        self.output = _dense(hidden, config.num_labels, config, rngs)

    def _norm(self, norm, x: Array, training: bool) -> Array:
        return norm(x, use_running_average=not training) if self.config.head_batchnorm else norm(x)

    def __call__(self, x: Array, rngs: nnx.Rngs | None) -> Array:
        drop = lambda t: self.dropout(t, deterministic=rngs is None, rngs=rngs)  # noqa: E731
        training = rngs is not None
        x = jax.nn.relu(self._norm(self.norm1, self.dense1(drop(x)), training))  # [B, H]
        x = jax.nn.relu(self._norm(self.norm2, self.dense2(drop(x)), training))  # [B, H]
        return self.output(x)  # [B, L]


class LinearHead(nnx.Module):
    """Dropout then one dense layer to the labels (HF's `classifier`)."""

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        self.dropout = nnx.Dropout(config.classifier_dropout)
        self.output = _dense(config.hidden_size, config.num_labels, config, rngs)

    def __call__(self, x: Array, rngs: nnx.Rngs | None) -> Array:
        return self.output(self.dropout(x, deterministic=rngs is None, rngs=rngs))  # [B, L]


def masked_mean(hidden: Array, attention_mask: Array) -> Array:
    """Mean of the real-token states: [B, S, H] x [B, S] -> [B, H]."""
    weights = attention_mask.astype(hidden.dtype)[..., None]  # [B, S, 1]
    return (hidden * weights).sum(axis=1) / jnp.maximum(weights.sum(axis=1), 1.0)


class BertClassifier(nnx.Module):
    """Encoder + pooling + head. `head`: linear on pooled [CLS], linear on the mean, an MLP on [CLS], or (token)
    linear on every token: logits [B, S, L] instead of [B, L]."""

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        self.config = config
        self.encoder = Encoder(config, rngs)
        uses_pooler = config.head == "linear" and config.use_pooler
        self.pooler = Pooler(config, rngs) if uses_pooler else None
        self.head = MLPHead(config, rngs) if config.head == "mlp" else LinearHead(config, rngs)

    def pool(self, hidden: Array, attention_mask: Array) -> Array:
        """The sentence vector the head sees: [B, S, H] -> [B, H]."""
        if self.config.head == "mean":
            return masked_mean(hidden, attention_mask)
        cls_state = hidden[:, 0]  # [B, H]
        return self.pooler(cls_state) if self.pooler is not None else cls_state

    def __call__(
        self,
        input_ids: Array,  # [B, S]
        attention_mask: Array,  # [B, S]
        token_type_ids: Array | None = None,  # [B, S]
        rngs: nnx.Rngs | None = None,  # dropout on when given (train mode)
    ) -> Array:
        hidden = self.encoder(input_ids, attention_mask, token_type_ids, rngs)  # [B, S, H]
        if self.config.head == TOKEN_HEAD:
            return self.head(hidden, rngs).astype(jnp.float32)  # [B, S, L]
        logits = self.head(self.pool(hidden, attention_mask), rngs)  # [B, L]
        return logits.astype(jnp.float32)
