"""Parity with the Hugging Face PyTorch reference (goldens written by scripts/make_goldens.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bertcls.model.config import ModelConfig
from bertcls.model.tokenizer import load_tokenizer
from bertcls.model.weights import hf_key_table, load_hf_checkpoint, param_shapes
from tests.conftest import GOLDEN, TINY_MODELS

TOKEN_MODELS = ("tiny-bert-token", "tiny-distilbert-token")  # *ForTokenClassification: logits [B, S, L]


def _config(name: str) -> ModelConfig:
    return ModelConfig.from_json_file(
        GOLDEN / name / "config.json", **({"head": "token"} if name in TOKEN_MODELS else {})
    )


def _load_tiny(name: str):
    config = _config(name)
    model, report = load_hf_checkpoint(GOLDEN / name, config)
    return model, report, np.load(GOLDEN / f"{name}.npz")


@pytest.mark.parametrize("name", [*TINY_MODELS, *TOKEN_MODELS])
def test_tiny_parity_logits_and_hidden_states(name):
    model, report, golden = _load_tiny(name)
    assert report.initialized == ()  # every parameter, head included, came from the checkpoint
    token_types = golden.get("token_type_ids")
    logits = np.asarray(model(golden["input_ids"], golden["attention_mask"], token_types))
    hidden = np.asarray(model.encoder(golden["input_ids"], golden["attention_mask"], token_types))
    real = golden["attention_mask"][..., None].astype(bool)  # padded positions are undefined in HF too
    if name in TOKEN_MODELS:  # per token: compare the real positions
        assert logits.shape == golden["logits"].shape
        logits, expected = np.where(real, logits, 0), np.where(real, golden["logits"], 0)
    else:
        expected = golden["logits"]
    assert np.abs(logits - expected).max() <= 1e-5
    assert np.abs(np.where(real, hidden - golden["last_hidden_state"], 0)).max() <= 1e-5


@pytest.mark.parametrize("name", [*TINY_MODELS, *TOKEN_MODELS])
def test_key_table_parity_with_hf_state_dict(name):
    """HF's *ForSequenceClassification state dict and our table map one to one, with the same sizes.

    The expectation is this test's own (every key, nothing allowed to stay unused), not the loader's
    allow-list: a key the table forgot, or one it maps twice, fails here even if the allow-list grew."""
    hf_keys = json.loads((GOLDEN / "state_dict_keys.json").read_text())[name]
    config = _config(name)
    table = hf_key_table(config, f"{config.model_type}.")
    shapes = param_shapes(config)
    mapped = {hf_key: ours for ours, (hf_key, _) in table.items() if ours in shapes}
    assert len(mapped) == len(shapes), "two of our parameters read the same HF tensor"
    assert set(mapped) == set(hf_keys)
    for key, shape in hf_keys.items():
        assert int(np.prod(shape)) == int(np.prod(shapes[mapped[key]])), key


def test_minilm_parity_padded_batch(minilm_dir):
    golden = np.load(GOLDEN / "minilm_reference.npz")
    tokenizer = load_tokenizer(minilm_dir)
    batch = tokenizer([str(s) for s in golden["sentences"]], padding=True, return_tensors="np")
    np.testing.assert_array_equal(batch["input_ids"], golden["input_ids"])
    config = ModelConfig.from_json_file(minilm_dir / "config.json")
    model, report = load_hf_checkpoint(minilm_dir, config)
    assert report.unused == ("embeddings.position_ids",)
    hidden = np.asarray(model.encoder(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]))
    mask = golden["attention_mask"][..., None].astype(np.float32)
    mean = (hidden * mask).sum(1) / mask.sum(1)
    assert np.abs(hidden[:, 0] - golden["cls_state"]).max() <= 1e-5
    assert np.abs(mean - golden["mean_state"]).max() <= 1e-5
    assert np.abs((hidden[..., :16] - golden["token_states_slice"]) * mask).max() <= 1e-5
