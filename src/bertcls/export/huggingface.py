"""A bertcls model as a Hugging Face directory that transformers loads with AutoModelForSequenceClassification:
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

from bertcls.config import ModelConfig
from bertcls.errors import ConfigError
from bertcls.model.weights import flat_params, hf_key_table, load_model, written_atomically

HF_CLASSES = {"bert": "BertForSequenceClassification", "distilbert": "DistilBertForSequenceClassification"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def check_exportable(config: ModelConfig) -> None:
    if config.head != "linear":
        raise ConfigError(
            f"This model was trained with head={config.head}; Hugging Face's {HF_CLASSES[config.model_type]} pools "
            "[CLS] through its pooler (bertcls's head=linear), so a mean-pooled or MLP head has no counterpart there "
            "and the export would predict differently. Train with head=linear to export to Hugging Face; the MLflow "
            "model (mlflow.pyfunc.load_model) serves any head."
        )


def hf_config(config: ModelConfig, label_names: list[str] | None) -> dict:
    """config.json of the matching *ForSequenceClassification model."""
    regression = config.num_labels == 1
    names = list(label_names) if label_names else [f"LABEL_{i}" for i in range(config.num_labels)]
    labels = {"id2label": {str(i): n for i, n in enumerate(names)}, "label2id": {n: i for i, n in enumerate(names)},
              "problem_type": "regression" if regression else "single_label_classification"}  # fmt: skip
    if config.model_type == "distilbert":
        architecture = {
            "model_type": "distilbert", "vocab_size": config.vocab_size, "dim": config.hidden_size,
            "n_layers": config.num_layers, "n_heads": config.num_heads, "hidden_dim": config.intermediate_size,
            "activation": config.hidden_act, "dropout": config.hidden_dropout,
            "attention_dropout": config.attention_dropout, "seq_classif_dropout": config.classifier_dropout,
            "max_position_embeddings": config.max_position_embeddings, "pad_token_id": config.pad_token_id,
            "sinusoidal_pos_embds": False,
        }  # fmt: skip
    else:
        architecture = {
            "model_type": "bert", "vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
            "num_hidden_layers": config.num_layers, "num_attention_heads": config.num_heads,
            "intermediate_size": config.intermediate_size, "hidden_act": config.hidden_act,
            "hidden_dropout_prob": config.hidden_dropout, "attention_probs_dropout_prob": config.attention_dropout,
            "classifier_dropout": config.classifier_dropout, "max_position_embeddings": config.max_position_embeddings,
            "type_vocab_size": config.type_vocab_size, "layer_norm_eps": config.layer_norm_eps,
            "pad_token_id": config.pad_token_id, "position_embedding_type": "absolute",
        }  # fmt: skip
    return {"architectures": [HF_CLASSES[config.model_type]], **architecture, **labels}


def hf_state_dict(model) -> dict[str, np.ndarray]:
    """Every parameter under its Hugging Face key, in the Hugging Face layout (Linear weights [out, in])."""
    table = hf_key_table(model.config, f"{model.config.model_type}.")
    return {table[path][0]: np.ascontiguousarray(table[path][1](array)) for path, array in flat_params(model).items()}


def export(model_dir: Path, out_dir: Path, card: str) -> Path:
    """Write the Hugging Face directory for the bertcls model in `model_dir`, atomically (all files or none)."""
    model, meta = load_model(model_dir)
    check_exportable(model.config)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"{out_dir} exists and is not empty. Export into a new (or empty) directory.")
    with written_atomically(out_dir) as staging:
        save_file(hf_state_dict(model), str(staging / "model.safetensors"), metadata={"format": "pt"})
        config = hf_config(model.config, meta.get("label_names"))
        (staging / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        for name in TOKENIZER_FILES:
            if (Path(model_dir) / name).is_file():
                shutil.copy(Path(model_dir) / name, staging / name)
        (staging / "README.md").write_text(card, encoding="utf-8")
    return out_dir
