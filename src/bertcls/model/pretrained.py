"""From a model name to a ready classifier: resolve (hub) -> config -> weights (strict) -> tokenizer."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from bertcls.hub import resolve_model
from bertcls.model.bert import BertClassifier
from bertcls.model.config import ModelConfig
from bertcls.model.tokenizer import load_tokenizer
from bertcls.model.weights import LoadReport, is_own_format, load_hf_checkpoint, load_model


@dataclasses.dataclass
class Pretrained:
    """A loaded classifier with everything needed to feed it text."""

    model: BertClassifier
    config: ModelConfig
    tokenizer: Any
    model_dir: Path
    report: LoadReport | None  # None for models saved by bertcls (loaded exactly)
    label_names: list[str] | None = None


def load_pretrained(name: str, seed: int = 0, **overrides: Any) -> Pretrained:
    """Load `name` (path or hub id). HF checkpoints get `overrides` (head, num_labels, compute_dtype)."""
    model_dir = resolve_model(name)
    if is_own_format(model_dir):
        model, meta = load_model(model_dir)
        return Pretrained(
            model,
            model.config,
            load_tokenizer(model_dir, model.config.vocab_size),
            model_dir,
            None,
            meta.get("label_names"),
        )
    config = ModelConfig.from_json_file(model_dir / "config.json", **overrides)
    model, report = load_hf_checkpoint(model_dir, config, seed=seed)
    return Pretrained(model, config, load_tokenizer(model_dir, config.vocab_size), model_dir, report)
