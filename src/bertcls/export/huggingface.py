"""A bertcls model as a Hugging Face directory that transformers loads with AutoModelForSequenceClassification
(a word tagger, task=ner: AutoModelForTokenClassification):
config.json (architecture, id2label / label2id), model.safetensors under the *ForSequenceClassification key
names (the loader's key table, inverted), the tokenizer files, and the model card as README.md. No mlflow.

Only head=linear has a Hugging Face counterpart: BertForSequenceClassification pools [CLS] through its pooler
(dense + tanh; DistilBERT: pre_classifier + ReLU) into the classifier. A mean-pooled or MLP head would load
without error into those classes and predict something else, so it is refused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from bertcls.errors import ExportError
from bertcls.model.config import TOKEN_HEAD, ModelConfig
from bertcls.model.weights import flat_params, hf_key_table, load_model, written_atomically

HF_CLASSES = {"bert": "BertForSequenceClassification", "distilbert": "DistilBertForSequenceClassification"}
HF_TOKEN_CLASSES = {"bert": "BertForTokenClassification", "distilbert": "DistilBertForTokenClassification"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def check_exportable(config: ModelConfig) -> None:
    if config.head not in ("linear", TOKEN_HEAD):
        raise ExportError(
            f"This model was trained with head={config.head}; Hugging Face's {HF_CLASSES[config.model_type]} pools "
            "[CLS] through its pooler (bertcls's head=linear), so a mean-pooled or MLP head has no counterpart there "
            "and the export would predict differently. Train with head=linear to export to Hugging Face; the MLflow "
            "model (mlflow.pyfunc.load_model) serves any head."
        )


def hf_config(config: ModelConfig, label_names: list[str] | None, multi_label: bool = False) -> dict:
    """config.json of the matching *ForSequenceClassification (a tagger: *ForTokenClassification) model;
    `multi_label`: problem_type multi_label_classification, so transformers trains it with BCE as we did."""
    regression = config.num_labels == 1
    names = list(label_names) if label_names else [f"LABEL_{i}" for i in range(config.num_labels)]
    labels = {"id2label": {str(i): n for i, n in enumerate(names)}, "label2id": {n: i for i, n in enumerate(names)}}
    if config.head == TOKEN_HEAD:
        return {"architectures": [HF_TOKEN_CLASSES[config.model_type]], **config.to_hf_dict(), **labels}
    kind = "multi_label_classification" if multi_label else "single_label_classification"
    labels["problem_type"] = "regression" if regression else kind
    return {"architectures": [HF_CLASSES[config.model_type]], **config.to_hf_dict(), **labels}


def hf_state_dict(model, mapped_only: bool = False) -> dict[str, np.ndarray]:
    """Every parameter under its Hugging Face key, in the Hugging Face layout (Linear weights [out, in]);
    `mapped_only`: leave out what has no Hugging Face counterpart (an MLP head) instead of failing."""
    table = hf_key_table(model.config, f"{model.config.model_type}.")
    params = {path: array for path, array in flat_params(model).items() if not mapped_only or path in table}
    return {table[path][0]: np.ascontiguousarray(table[path][1](array)) for path, array in params.items()}


def export(model_dir: Path, out_dir: Path, card: str) -> Path:
    """Write the Hugging Face directory for the bertcls model in `model_dir`, atomically (all files or none)."""
    model, meta = load_model(model_dir)
    check_exportable(model.config)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ExportError(f"{out_dir} exists and is not empty. Export into a new (or empty) directory.")
    with written_atomically(out_dir) as staging:
        save_file(hf_state_dict(model), str(staging / "model.safetensors"), metadata={"format": "pt"})
        task_type = (meta.get("reading_settings") or {}).get("task_type")
        config = hf_config(model.config, meta.get("label_names"), multi_label=task_type == "multilabel")
        (staging / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        for name in TOKENIZER_FILES:
            if (Path(model_dir) / name).is_file():
                shutil.copy(Path(model_dir) / name, staging / name)
        (staging / "README.md").write_text(card, encoding="utf-8")
    return out_dir
