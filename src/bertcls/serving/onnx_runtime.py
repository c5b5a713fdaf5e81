"""Predictions from an ONNX export with ONNX Runtime and `tokenizers` alone: no JAX, Flax or transformers.

What the ONNX-backed MLflow model runs (it ships this module with `inputs.py` and `errors.py`, nothing else of
bertcls). Texts are encoded by the tokenizer the model was trained with (`tokenizer.json`, truncated to the
model's length, pairs as pairs), sorted by length into batches padded to their longest row, and answered as the
JAX model answers: `label` and `prob_<label>` (calibrated unless asked not to), `labels` for multi-label, `score`
for regression. Models that read long texts as windows, and word taggers, are served by the JAX model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bertcls.serving.decisions import label_thresholds

SETTINGS_FILE = "bertcls_config.json"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def servable(settings: dict) -> str | None:
    """Why the ONNX runtime cannot serve a model with these saved settings, or None when it can."""
    reading = settings.get("reading_settings") or {}
    if reading.get("task_type") == "ner":
        return "a word tagger answers entities with character offsets, which only the JAX model computes"
    if reading.get("long_text") == "windows":
        return "it reads long texts as overlapping windows, which only the JAX model splits"
    return None


class OnnxPredictor:
    """An exported graph (`model.onnx` or `model.int8.onnx`), its tokenizer and its saved settings."""

    def __init__(self, directory: str | Path, graph: str = "model.onnx", batch_size: int = 32, threads: int = 0):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        directory = Path(directory)
        settings = json.loads((directory / SETTINGS_FILE).read_text(encoding="utf-8"))
        refused = servable(settings)
        if refused:
            raise ValueError(f"This model cannot be served by ONNX Runtime: {refused}.")
        reading, calibration = settings["reading_settings"], settings.get("calibration") or {}
        self.label_names = list(reading.get("label_names") or settings.get("label_names") or [])
        self.is_regression = reading.get("task") == "regression" or not self.label_names
        self.is_multilabel = reading.get("task_type") == "multilabel"
        self.has_text_pair = bool(reading.get("has_text_pair"))
        self.temperature = float(calibration.get("temperature") or 1.0)
        self.temperatures = np.asarray(calibration.get("temperatures") or [], np.float64)  # [L] multi-label
        self.tuned_thresholds = np.asarray(calibration.get("thresholds") or [], np.float64)  # [L] multi-label
        self.batch_size = batch_size
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.no_padding()  # each batch is padded to its own longest row below
        self.tokenizer.enable_truncation(int(reading["max_seq_length"]))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(directory / graph), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def logits(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> np.ndarray:
        """[T, C] logits (or [T, 1] scores) in input order."""
        rows = list(zip(texts, pairs, strict=True)) if pairs is not None else list(texts)
        encoded = self.tokenizer.encode_batch(rows)
        lengths = np.array([len(e.ids) for e in encoded])
        order = np.argsort(lengths, kind="stable")  # similar lengths together: less padding
        out = np.zeros((len(encoded), 1 if self.is_regression else len(self.label_names)), np.float32)
        for start in range(0, len(order), self.batch_size):
            chosen = order[start : start + self.batch_size]
            width = int(lengths[chosen].max())
            batch = {name: np.zeros((len(chosen), width), np.int64) for name in INPUT_NAMES}  # [B, S]
            for row, index in enumerate(chosen):
                e, n = encoded[index], lengths[index]
                batch["input_ids"][row, :n], batch["token_type_ids"][row, :n] = e.ids, e.type_ids
                batch["attention_mask"][row, :n] = 1
            out[chosen] = self.session.run(["logits"], {name: batch[name] for name in self.inputs})[0]
        return out

    def frame(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None = None,
        calibrated: bool = True,
        threshold: float | None = None,
    ) -> pd.DataFrame:
        """The served answer, column for column the JAX model's."""
        logits = self.logits(texts, pairs).astype(np.float64)
        if self.is_regression:
            return pd.DataFrame({"score": logits[:, 0]})
        if self.is_multilabel:
            scale = self.temperatures if calibrated and len(self.temperatures) else 1.0
            probs = 1.0 / (1.0 + np.exp(-logits / scale))  # [T, L]
            cut = label_thresholds(
                len(self.label_names), self.tuned_thresholds, self.temperatures, calibrated, threshold
            )
            chosen = probs >= cut
            frame = pd.DataFrame({"labels": [[self.label_names[i] for i in np.flatnonzero(r)] for r in chosen]})
        else:
            scaled = logits / (self.temperature if calibrated else 1.0)
            probs = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
            probs /= probs.sum(axis=-1, keepdims=True)  # [T, C]
            frame = pd.DataFrame({"label": [self.label_names[i] for i in probs.argmax(axis=-1)]})
        for i, name in enumerate(self.label_names):
            frame[f"prob_{name}"] = probs[:, i]
        return frame
