"""The encoder with BERT's masked-LM head, for continued pre-training (`pretrain`); no IO, no mlflow.

The head is HF's: dense -> activation -> LayerNorm, then the output projection onto the vocabulary whose
matrix IS the word-embedding matrix (tied: `Embed.attend`), plus its own bias. Scoring only the chosen
positions ([B, P], not [B, S]) keeps the vocabulary-sized output small.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from bertcls.model.bert import Encoder, _dense, _layer_norm, activation
from bertcls.model.config import ModelConfig

Array = jax.Array


class MLMHead(nnx.Module):
    """Transform (dense, activation, LayerNorm) then logits over the vocabulary with the tied embedding."""

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        self.config = config
        self.transform = _dense(config.hidden_size, config.hidden_size, config, rngs)
        self.norm = _layer_norm(config, rngs)
        self.bias = nnx.Param(jnp.zeros((config.vocab_size,), jnp.float32))

    def __call__(self, hidden: Array, word_embedding: nnx.Embed) -> Array:
        x = self.norm(activation(self.config.hidden_act, self.transform(hidden)))  # [B, P, H]
        return word_embedding.attend(x).astype(jnp.float32) + self.bias[...]  # [B, P, V]


class MaskedLM(nnx.Module):
    """Encoder + MLM head; `__call__` gives logits at the chosen positions only."""

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs, encoder: Encoder | None = None):
        self.config = config
        self.encoder = encoder if encoder is not None else Encoder(config, rngs)
        self.mlm = MLMHead(config, rngs)

    def __call__(
        self,
        input_ids: Array,  # [B, S]
        attention_mask: Array,  # [B, S]
        positions: Array,  # [B, P] positions to score
        rngs: nnx.Rngs | None = None,  # dropout on when given
    ) -> Array:
        hidden = self.encoder(input_ids, attention_mask, None, rngs)  # [B, S, H]
        chosen = jnp.take_along_axis(hidden, positions[..., None], axis=1)  # [B, P, H]
        return self.mlm(chosen, self.encoder.embeddings.word)  # [B, P, V]
