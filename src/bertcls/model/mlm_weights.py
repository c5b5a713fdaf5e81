"""Masked-LM models in and out of the Hugging Face layout (BertForMaskedLM / DistilBertForMaskedLM key names).

In: the encoder through the classifier's strict loader, the MLM head from the checkpoint when it has one (BERT
checkpoints do; sentence-embedding checkpoints such as all-MiniLM-L6-v2 do not: the head then starts fresh).
Out: a directory `train -P model=<dir>` (and transformers) loads: config.json, model.safetensors, tokenizer.
The output matrix is the word embedding (tied), so it is not stored twice, as transformers saves it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from safetensors.numpy import save_file

from bertcls.export.huggingface import hf_config
from bertcls.model.config import ModelConfig
from bertcls.model.mlm import MaskedLM
from bertcls.model.weights import checkpoint_tensors, flat_params, hf_key_table, load_hf_checkpoint, written_atomically


def _unchanged(array: np.ndarray) -> np.ndarray:
    return array


MLM_CLASSES = {"bert": "BertForMaskedLM", "distilbert": "DistilBertForMaskedLM"}
# Our MLM head parameter -> (Hugging Face key, HF layout -> ours); the same transform inverts (a transpose).
MLM_HEAD_KEYS = {
    "bert": {
        "mlm.transform.kernel": ("cls.predictions.transform.dense.weight", np.transpose),
        "mlm.transform.bias": ("cls.predictions.transform.dense.bias", _unchanged),
        "mlm.norm.scale": ("cls.predictions.transform.LayerNorm.weight", _unchanged),
        "mlm.norm.bias": ("cls.predictions.transform.LayerNorm.bias", _unchanged),
        "mlm.bias": ("cls.predictions.bias", _unchanged),
    },
    "distilbert": {
        "mlm.transform.kernel": ("vocab_transform.weight", np.transpose),
        "mlm.transform.bias": ("vocab_transform.bias", _unchanged),
        "mlm.norm.scale": ("vocab_layer_norm.weight", _unchanged),
        "mlm.norm.bias": ("vocab_layer_norm.bias", _unchanged),
        "mlm.bias": ("vocab_projector.bias", _unchanged),
    },
}


def load_masked_lm(model_dir: Path, config: ModelConfig, seed: int = 0) -> tuple[MaskedLM, bool]:
    """(model, whether the MLM head came from the checkpoint) for the checkpoint in `model_dir`."""
    from flax import nnx

    tensors = checkpoint_tensors(model_dir)  # read once: the encoder and the MLM head come from it
    classifier, _ = load_hf_checkpoint(model_dir, dataclasses.replace(config, head="mean"), seed=seed, tensors=tensors)
    model = MaskedLM(config, nnx.Rngs(params=seed), encoder=classifier.encoder)
    keys = MLM_HEAD_KEYS[config.model_type]
    if not all(hf_key in tensors for hf_key, _ in keys.values()):
        return model, False
    head_state = nnx.state(model.mlm, nnx.Param)
    flat = nnx.to_flat_state(head_state)
    for path, variable in flat:
        hf_key, transform = keys["mlm." + ".".join(str(p) for p in path)]
        value = transform(tensors[hf_key])
        if value.shape != variable.get_value().shape:
            return model, False  # another vocabulary or width: a fresh head, as for a checkpoint without one
        variable.set_value(jnp.asarray(value, dtype=jnp.float32))
    nnx.update(model.mlm, nnx.from_flat_state(flat))
    return model, True


def mlm_state_dict(model: MaskedLM) -> dict[str, np.ndarray]:
    """Every parameter under its *ForMaskedLM key, in the Hugging Face layout (Linear weights [out, in])."""
    config = model.config
    table = {**hf_key_table(config, f"{config.model_type}."), **MLM_HEAD_KEYS[config.model_type]}
    return {table[path][0]: np.ascontiguousarray(table[path][1](array)) for path, array in flat_params(model).items()}


def save_encoder(model: MaskedLM, tokenizer, out_dir: Path, card: str) -> Path:
    """Write the adapted encoder with its MLM head as a Hugging Face directory, atomically (all files or none)."""
    with written_atomically(out_dir) as staging:
        save_file(mlm_state_dict(model), str(staging / "model.safetensors"), metadata={"format": "pt"})
        config = {
            k: v for k, v in hf_config(model.config, None).items() if k not in ("id2label", "label2id", "problem_type")
        }
        config["architectures"] = [MLM_CLASSES[model.config.model_type]]
        (staging / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        tokenizer.save_pretrained(str(staging))
        (staging / "README.md").write_text(card, encoding="utf-8")
    return Path(out_dir)
