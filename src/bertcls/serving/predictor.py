"""Batch inference on raw texts with the same length buckets as training (no mlflow, no mesh).

Used by the pyfunc model and the evaluate job: texts -> tokenized (truncated, or overlapping windows as
the model was trained) -> length-sorted static-shape batches -> logits (or scores) per text, in input order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
import pandas as pd
from flax import nnx

from bertcls.data.batching import TokenizedSplit
from bertcls.data.reading import ReadingSettings
from bertcls.data.tokenize import encode_texts, padded_matrix
from bertcls.evaluation.calibration import Calibration, scaled_probs
from bertcls.evaluation.multilabel import sigmoid_probs
from bertcls.model.bert import BertClassifier
from bertcls.model.tokenizer import load_tokenizer
from bertcls.model.weights import load_model
from bertcls.serving.decisions import label_thresholds
from bertcls.train.inference import infer_outputs


class Predictor:
    """A loaded classifier plus its tokenizer, label names and padding buckets."""

    def __init__(
        self,
        model: BertClassifier,
        tokenizer,
        settings: ReadingSettings,
        batch_size: int = 32,
        calibration: Calibration | None = None,
    ):
        self.tokenizer = tokenizer
        self.calibration = calibration or Calibration()  # the temperature fitted after training (1: none)
        self.settings = settings  # how the model reads text: saved with it, never taken from run params
        self.label_names: list[str] = list(settings.label_names)
        self.is_regression = model.config.num_labels == 1
        self.max_seq_length = settings.max_seq_length
        self.buckets = settings.buckets
        self.has_text_pair = settings.has_text_pair
        self.windows = settings.windows
        self.is_tagger = settings.task_type == "ner"  # answers entities per text (serving.tagging)
        self.is_multilabel = settings.task_type == "multilabel"  # answers a label set per text
        self.batch_size = batch_size
        self.model_config = model.config  # the architecture (layers, head) the weights are for
        graphdef, state = nnx.split(model)
        self._state = state
        self.parameter_count = int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(state)))

        @jax.jit
        def forward(state, input_ids, attention_mask, token_type_ids):
            return nnx.merge(graphdef, state)(input_ids, attention_mask, token_type_ids)

        self._forward = forward

    @classmethod
    def from_dir(cls, model_dir: Path, batch_size: int = 32) -> Predictor:
        model, meta = load_model(model_dir)
        settings, calibration = ReadingSettings.from_model_meta(meta), Calibration.from_dict(meta.get("calibration"))
        return cls(model, load_tokenizer(model_dir), settings, batch_size, calibration)

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

    def forward_batch(self, batch: dict[str, np.ndarray]):
        """The model's outputs for one collated batch: [B, L] (a tagger: [B, S, L])."""
        return self._forward(self._state, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])

    def outputs(self, split: TokenizedSplit) -> np.ndarray:
        """[T, num_labels] logits (classification) or [T, 1] scores (regression), one per text, in input order."""
        num_outputs = 1 if self.is_regression else len(self.label_names)
        return infer_outputs(split, self.forward_batch, self.batch_size, self.buckets, num_outputs)

    def predict(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> np.ndarray:
        """[T, num_labels] logits or [T, 1] scores for raw texts (and pairs), in input order."""
        return self.outputs(self.tokenize(texts, pairs)) if len(texts) else np.zeros((0, 1), np.float32)

    def predict_frame(
        self, texts: Sequence[str], pairs: Sequence[str] | None = None, calibrated: bool = True
    ) -> pd.DataFrame:
        """What the logged model answers: `label` and one `prob_<label>` column per class (calibrated unless
        `calibrated` is false), or `score`."""
        return predictions_frame(self, self.predict(texts, pairs), calibrated)

    def probabilities(self, outputs: np.ndarray, calibrated: bool = True) -> np.ndarray:
        """[T, C] class probabilities of [T, C] logits: softmax(logits / T) with the fitted temperature, or T = 1
        (multi-label: each label's sigmoid(logit / T_l))."""
        if self.is_multilabel:
            temperatures = self.calibration.temperatures if calibrated and self.calibration.temperatures else None
            return sigmoid_probs(outputs, temperatures)
        return scaled_probs(outputs, self.calibration.temperature if calibrated else 1.0)

    def thresholds(self, calibrated: bool = True, threshold: float | None = None) -> np.ndarray:
        """[L] each label's decision threshold on `probabilities(calibrated)` (bertcls.serving.decisions)."""
        c = self.calibration
        return label_thresholds(len(self.label_names), c.thresholds, c.temperatures, calibrated, threshold)


def load(model_dir: str | Path, batch_size: int = 32) -> Predictor:
    """A model saved by bertcls (`FineTuned.save`, or the `saved` folder of a logged model), ready to predict."""
    return Predictor.from_dir(Path(model_dir), batch_size)


def predictions_frame(
    predictor: Predictor, outputs: np.ndarray, calibrated: bool = True, threshold: float | None = None
) -> pd.DataFrame:
    """Model outputs -> the documented output DataFrame (probabilities calibrated unless `calibrated` is false).
    Multi-label: `labels` (the label set, in label order) and `prob_<label>` per label; `threshold` overrides the
    tuned thresholds with one number."""
    if predictor.is_regression:
        return pd.DataFrame({"score": outputs[:, 0].astype(np.float64)})
    probs = predictor.probabilities(outputs, calibrated)
    if predictor.is_multilabel:
        chosen = probs >= predictor.thresholds(calibrated, threshold)  # [T, L]
        frame = pd.DataFrame({"labels": [[predictor.label_names[i] for i in np.flatnonzero(row)] for row in chosen]})
        for i, name in enumerate(predictor.label_names):
            frame[f"prob_{name}"] = probs[:, i]
        return frame
    frame = pd.DataFrame({"label": [predictor.label_names[i] for i in probs.argmax(axis=-1)]})
    for i, name in enumerate(predictor.label_names):
        frame[f"prob_{name}"] = probs[:, i]
    return frame


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)
