"""Batch inference on raw texts with the same length buckets as training (no mlflow, no mesh).

Used by the pyfunc model and the evaluate job: texts -> tokenized (truncated, or overlapping windows as
the model was trained) -> length-sorted static-shape batches -> logits (or scores) per text, in input order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from bertcls.data.batching import TokenizedSplit
from bertcls.data.tokenize import encode_texts, padded_matrix
from bertcls.inference import infer_outputs
from bertcls.model.bert import BertClassifier
from bertcls.model.weights import load_model
from bertcls.settings import ReadingSettings
from bertcls.tokenizer import load_tokenizer


class Predictor:
    """A loaded classifier plus its tokenizer, label names and padding buckets."""

    def __init__(self, model: BertClassifier, tokenizer, settings: ReadingSettings, batch_size: int = 32):
        self.tokenizer = tokenizer
        self.settings = settings  # how the model reads text: saved with it, never taken from run params
        self.label_names: list[str] = list(settings.label_names)
        self.is_regression = model.config.num_labels == 1
        self.max_seq_length = settings.max_seq_length
        self.buckets = settings.buckets
        self.has_text_pair = settings.has_text_pair
        self.windows = settings.windows
        self.batch_size = batch_size
        graphdef, state = nnx.split(model)
        self._state = state

        @jax.jit
        def forward(state, input_ids, attention_mask, token_type_ids):
            return nnx.merge(graphdef, state)(input_ids, attention_mask, token_type_ids)

        self._forward = forward

    @classmethod
    def from_dir(cls, model_dir: Path, batch_size: int = 32) -> Predictor:
        model, meta = load_model(model_dir)
        return cls(model, load_tokenizer(model_dir), ReadingSettings.from_model_meta(meta), batch_size)

    def tokenize(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> TokenizedSplit:
        """Rows as the model was trained on them: truncated texts, or each text's overlapping windows."""
        encoded = encode_texts(self.tokenizer, texts, pairs, self.max_seq_length, self.windows)
        return TokenizedSplit(
            input_ids=padded_matrix(encoded["input_ids"], self.max_seq_length),
            token_type_ids=padded_matrix(encoded["token_type_ids"], self.max_seq_length),
            lengths=np.asarray(encoded["length"], dtype=np.int32),
            labels=np.zeros(len(encoded["length"]), dtype=np.int32),
            documents=np.asarray(encoded["document"], dtype=np.int32) if self.windows else None,
        )

    def outputs(self, split: TokenizedSplit) -> np.ndarray:
        """[T, num_labels] logits (classification) or [T, 1] scores (regression), one per text, in input order."""

        def forward(batch):
            return self._forward(self._state, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])

        num_outputs = 1 if self.is_regression else len(self.label_names)
        return infer_outputs(split, forward, self.batch_size, self.buckets, num_outputs)

    def predict(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> np.ndarray:
        return self.outputs(self.tokenize(texts, pairs)) if len(texts) else np.zeros((0, 1), np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)
